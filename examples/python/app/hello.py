"""xinetd's classic hello-world health check, as a Python script.

The connection is stdin and stdout: read the request head up to its blank
line, answer 200 OK, and end (wasinetd closes the connection).
"""

import sys

BODY = b"Hello, World!"


def main():
    for line in sys.stdin.buffer:
        if line in (b"\r\n", b"\n"):
            break
    sys.stdout.buffer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
