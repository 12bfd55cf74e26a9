"""Migration, step 1 of 4: the echo server as Python's asyncore wrote it.

    python3 -W ignore examples/migration_step1_asyncore.py [ADDR]

Step 2 (examples/migration_step2_dispatchers.rs) is the same program on this crate; step 3
(migration_step3_mixed.rs) keeps the handler and makes the listener native; step 4
(native_echo_server.rs) is plain Tokio. MIGRATION.md walks through them.
"""
import asyncore
import signal
import socket
import sys


class EchoHandler(asyncore.dispatcher_with_send):
    def handle_read(self):
        data = self.recv(8192)
        if data:
            self.send(data)


class EchoServer(asyncore.dispatcher):
    def __init__(self, host, port):
        asyncore.dispatcher.__init__(self)
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.set_reuse_addr()
        self.bind((host, port))
        self.listen(128)
        print("listening on %s:%d" % self.socket.getsockname(), flush=True)

    def handle_accepted(self, sock, addr):
        EchoHandler(sock)


def interrupt(signum, frame):
    raise KeyboardInterrupt


# SIGINT and SIGTERM end the loop, even when this was started with SIGINT ignored (as a
# background job of a non-interactive shell is).
signal.signal(signal.SIGINT, interrupt)
signal.signal(signal.SIGTERM, interrupt)

host, _, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:8080").rpartition(":")
EchoServer(host, int(port))
try:
    asyncore.loop()
except KeyboardInterrupt:
    asyncore.close_all()
