"""Pipelined load on smtp_server: N messages of about SIZE bytes on one connection.

    target/release/examples/smtp_server 127.0.0.1:0 >/tmp/messages &   # note its port
    python3 examples/smtp_server/load.py PORT 20000 1024

Sends every transaction (MAIL, RCPT, DATA, the message) at once from a thread, reads the
replies until all have come, and prints messages/s and MB/s. The server prints every message,
so its stdout is part of what is measured: send it to a file or /dev/null, not a terminal.
"""
import socket, sys, threading, time

port, n, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
body = b"Subject: load\r\n\r\n" + (b"x" * 70 + b"\r\n") * (size // 72)
one = b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n" + body + b".\r\n"
s = socket.create_connection(("127.0.0.1", port))
s.recv(1000)
s.sendall(b"HELO load\r\n")
s.recv(1000)
expect = n * len(b"250 OK\r\n250 OK\r\n354 End data with <CR><LF>.<CR><LF>\r\n250 OK\r\n")
t0 = time.perf_counter()
threading.Thread(target=lambda: s.sendall(one * n), daemon=True).start()
got = 0
while got < expect:
    d = s.recv(1 << 20)
    assert d, "the server closed the connection"
    got += len(d)
dt = time.perf_counter() - t0
print(f"{n} messages of {len(body)} bytes in {dt:.2f} s: "
      f"{n / dt:.0f} messages/s, {n * len(one) / dt / 1e6:.1f} MB/s")
