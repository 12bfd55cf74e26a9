"""The echo server of Python's asyncore documentation, as benches/echo_load runs it.

    python3.11 asyncore_echo_server.py [IP:PORT]    # default 127.0.0.1:8080

An EchoHandler (a dispatcher_with_send) per connection sends back what it reads, 8192 bytes at
a time; an EchoServer accepts. What differs from the documentation, for the bench: the address
comes from the command line (port 0 allowed) and the server prints the examples' `listening on
IP:PORT` line; the backlog is 1024, as in the Rust servers; nothing is printed per connection
(nobody reads stdout after the first line); the loop polls with poll(2), since select(2) takes
no descriptor above 1023; SIGTERM exits with status 0.
"""

import signal
import sys
import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # asyncore is deprecated in 3.11
    import asyncore


class EchoHandler(asyncore.dispatcher_with_send):
    def handle_read(self):
        data = self.recv(8192)
        if data:
            self.send(data)


class EchoServer(asyncore.dispatcher):
    def __init__(self, host, port):
        asyncore.dispatcher.__init__(self)
        self.create_socket()
        self.set_reuse_addr()
        self.bind((host, port))
        self.listen(1024)

    def handle_accepted(self, sock, addr):
        EchoHandler(sock)


def main():
    host, _, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:8080").rpartition(":")
    server = EchoServer(host, int(port))
    bound_host, bound_port = server.socket.getsockname()[:2]
    print(f"listening on {bound_host}:{bound_port}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    asyncore.loop(use_poll=True)


if __name__ == "__main__":
    main()
