/*
 * The classic inetd hello-world health check, native: what xinetd,
 * tcpserver and systemd-socket-activate fork and exec per connection in
 * wasinetd's benchmark. The socket is stdin/stdout. Same bytes as the
 * hello-http guest: read the request head to the blank line (so nothing
 * unread is left to make the kernel send RST), write the answer, exit.
 * Raw read(2)/write(2): what is measured is the spawn, not stdio.
 *
 * Build: cc -O2 -static -o hello hello.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <unistd.h>

static const char ANSWER[] =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: text/plain\r\n"
    "Connection: close\r\n"
    "Content-Length: 13\r\n"
    "\r\n"
    "Hello, World!";

int main(void) {
    char buf[8192];
    size_t len = 0;
    for (;;) {
        ssize_t n = read(0, buf + len, sizeof buf - len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        size_t from = len >= 3 ? len - 3 : 0;
        len += (size_t)n;
        if (memmem(buf + from, len - from, "\r\n\r\n", 4)) break;
        if (len == sizeof buf) { /* a huge head: keep a tail and go on */
            memmove(buf, buf + len - 3, 3);
            len = 3;
        }
    }
    size_t off = 0;
    while (off < sizeof ANSWER - 1) {
        ssize_t n = write(1, ANSWER + off, sizeof ANSWER - 1 - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return 1;
        off += (size_t)n;
    }
    return 0;
}
