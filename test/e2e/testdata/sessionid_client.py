"""Reconnects N times with Python's ssl (OpenSSL) as a ticketless TLS 1.2
client: OP_NO_TICKET, TLS 1.2 at most, resuming the first connection's
session by ID on every reconnect. Prints 'resumed R of N ok K'.

usage: sessionid_client.py HOST ADDR PORT CA_PEM N
"""
import socket
import ssl
import sys

host, addr, port, ca, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(ca)
ctx.maximum_version = ssl.TLSVersion.TLSv1_2
ctx.options |= ssl.OP_NO_TICKET
session = None
resumed = ok = 0
for i in range(n + 1):
    with socket.create_connection((addr, port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=host, session=session) as s:
            if i == 0:
                session = s.session
            elif s.session_reused:
                resumed += 1
            s.sendall(b"GET / HTTP/1.1\r\nHost: " + host.encode() + b"\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            if data.startswith(b"HTTP/1.1 200"):
                ok += 1
print(f"resumed {resumed} of {n} ok {ok}")
