# xinetd's classic hello-world health check, as a Ruby script.
#
# The connection is stdin and stdout: read the request head up to its blank
# line, answer 200 OK, and end (wasinetd closes the connection).

BODY = "Hello, World!"

def main
  while (line = $stdin.gets) && !["\r\n", "\n"].include?(line)
  end
  $stdout.write("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n" \
                "Content-Length: #{BODY.bytesize}\r\n\r\n#{BODY}")
  $stdout.flush
end

main if __FILE__ == $0
