// xinetd's classic hello-world health check, as a QuickJS script (`--std`
// makes `std` and `os` globals).
//
// The connection is stdin and stdout: read the request head up to its blank
// line, answer 200 OK, and end (wasinetd closes the connection).

const body = "Hello, World!";
let line;
while ((line = std.in.getline()) !== null && line.replace(/\r$/, "") !== "") {}
std.out.puts(
  "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n" +
    "Content-Length: " + body.length + "\r\n\r\n" + body,
);
std.out.flush();
