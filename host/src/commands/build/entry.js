// The entry module `wasinetd build` wraps a JavaScript handler in (built by
// componentize-qjs: QuickJS-ng, snapshotted with Wizer after this module's
// top level ran). The handler is a script in QuickJS's `--std` style, the
// form `quickjs.wasm` runs: its whole text runs once per connection, with
// `std`, `os`, `scriptArgs`, `print` and `console` as globals, and here also
// `connection` (wasinetd:handler/connection). Its text is compiled here, at
// build time; each connection calls the compiled function.
//
// `std` is the part of QuickJS's module a handler needs, over the
// connection's WASI streams: `std.in` (getline, readAsString, eof),
// `std.out` and `std.err` (puts, printf, flush), `std.getenv`,
// `std.getenviron`. Files are not offered (the built form reads none).
import stdinApi from "wasi:cli/stdin@0.2.12";
import stdoutApi from "wasi:cli/stdout@0.2.12";
import stderrApi from "wasi:cli/stderr@0.2.12";
import environment from "wasi:cli/environment@0.2.12";
import connection from "wasinetd:handler/connection@0.1.0";
import random from "wasi:random/random@0.2.12";

const SCRIPT = __SCRIPT_PATH__;

// The script's text as one function, its first line on the wrapper's line
// so that errors give the script's own line numbers.
const handler = (0, eval)(
  "(function (std, os, scriptArgs, print, console, connection) {" + __SCRIPT_SOURCE__ + "\n})",
);

function utf8(s) {
  const out = [];
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length) {
      c = 0x10000 + ((c - 0xd800) << 10) + (s.charCodeAt(++i) - 0xdc00);
    }
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return new Uint8Array(out);
}

// UTF-8 to a string, as QuickJS's getline reads (invalid bytes: U+FFFD).
function text(b) {
  let s = "";
  for (let i = 0; i < b.length; ) {
    const c = b[i];
    let n = 0, cp = 0xfffd;
    if (c < 0x80) { cp = c; n = 1; }
    else if (c >= 0xc2 && c < 0xe0 && i + 1 < b.length) { cp = ((c & 31) << 6) | (b[i + 1] & 63); n = 2; }
    else if (c >= 0xe0 && c < 0xf0 && i + 2 < b.length) { cp = ((c & 15) << 12) | ((b[i + 1] & 63) << 6) | (b[i + 2] & 63); n = 3; }
    else if (c >= 0xf0 && c < 0xf5 && i + 3 < b.length) { cp = ((c & 7) << 18) | ((b[i + 1] & 63) << 12) | ((b[i + 2] & 63) << 6) | (b[i + 3] & 63); n = 4; }
    else { n = 1; }
    s += String.fromCodePoint(cp);
    i += n;
  }
  return s;
}

function input() {
  let stream = null, buf = new Uint8Array(0), pos = 0, eof = false;
  function fill() {
    if (eof) return false;
    if (!stream) stream = stdinApi.getStdin();
    try {
      const chunk = stream.blockingRead(65536);
      if (chunk.length === 0) return true;
      const rest = buf.subarray(pos);
      const next = new Uint8Array(rest.length + chunk.length);
      next.set(rest, 0);
      next.set(chunk, rest.length);
      buf = next;
      pos = 0;
      return true;
    } catch (e) {
      eof = true; // closed
      return false;
    }
  }
  return {
    getline() {
      for (;;) {
        const i = buf.indexOf(10, pos);
        if (i >= 0) { const line = text(buf.subarray(pos, i)); pos = i + 1; return line; }
        if (!fill()) {
          if (pos < buf.length) { const line = text(buf.subarray(pos)); pos = buf.length; return line; }
          return null;
        }
      }
    },
    readAsString() {
      while (fill()) {}
      const s = text(buf.subarray(pos));
      pos = buf.length;
      return s;
    },
    eof() { return eof && pos >= buf.length; },
  };
}

function output(open) {
  let stream = null, pending = [];
  return {
    puts(s) { pending.push(String(s)); },
    printf(fmt, ...a) {
      let i = 0;
      pending.push(String(fmt).replace(/%[sdif%]/g, (m) => (m === "%%" ? "%" : String(a[i++]))));
    },
    flush() {
      if (!pending.length) return;
      if (!stream) stream = open();
      const bytes = utf8(pending.join(""));
      pending = [];
      for (let off = 0; off < bytes.length; off += 4096) {
        stream.blockingWriteAndFlush(bytes.subarray(off, off + 4096));
      }
    },
  };
}

export const run = {
  run() {
    // The snapshot froze QuickJS's Math.random state, so that every
    // connection would draw the same numbers: each draw comes from the
    // host's random source instead (53 random bits, as Math.random gives).
    Math.random = () => {
      const b = random.getRandomBytes(7);
      let x = b[0] & 0x1f;
      for (let i = 1; i < 7; i++) x = x * 256 + b[i];
      return x / 9007199254740992;
    };
    const out = output(() => stdoutApi.getStdout());
    const err = output(() => stderrApi.getStderr());
    const env = () => Object.fromEntries(environment.getEnvironment());
    const std = {
      in: input(), out, err,
      getenv: (name) => env()[name],
      getenviron: env,
    };
    const line = (o) => (...a) => o.puts(a.join(" ") + "\n");
    const console = { log: line(out), info: line(out), warn: line(err), error: line(err) };
    let failed = null;
    try {
      handler(std, {}, [SCRIPT], line(out), console, connection);
    } catch (e) {
      failed = e;
    }
    try { out.flush(); } catch (e) {}
    if (failed !== null) {
      const stack = failed && failed.stack
        ? String(failed.stack).split("\n").filter((l) => !l.includes("/entry.js")).join("\n")
        : "";
      err.puts((String(failed) + "\n" + stack).replaceAll("<input>", SCRIPT).trimEnd() + "\n");
      try { err.flush(); } catch (e) {}
      throw "uncaught exception";
    }
    try { err.flush(); } catch (e) {}
  },
};
