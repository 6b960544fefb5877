//! Ruby guests: the npm builds of CRuby for WASI (`@ruby/3.4-wasm-wasi`'s
//! `ruby+stdlib.wasm` and its siblings), driven as their JavaScript host
//! would drive them, without JavaScript.
//!
//! Those builds are reactors, not commands: no `_start`, but `_initialize`,
//! `ruby-init: func(args: list<string>)` and `rb-eval-string-protect: func(str:
//! string) -> tuple<handle, s32>`, exported under their pre-component
//! wit-bindgen names (arguments passed as pointer and length, allocated in
//! the guest through `cabi_realloc`). They also import the bridge to
//! JavaScript (`rb-js-abi-host`, reached only when a script requires Ruby's
//! `js` library) and handle bookkeeping (`canonical_abi`). Here the bridge
//! traps with a message saying there is no JavaScript, and a handle is the
//! guest's own value: nothing outside the instance needs to tell them apart,
//! and the instance lives for one connection.
//!
//! A run does what `@ruby/wasm-wasi`'s `vm.js` does (`_initialize`, then
//! `ruby-init` with the command line, every string NUL-terminated), then
//! evaluates [`MAIN`], which loads the script as `ruby SCRIPT` would run it
//! and turns its end into an exit status. Everything else is the WASI
//! preview 1 world of any module guest, under the same guard and limits.

use anyhow::Context as _;
use wasmtime::{
    AsContextMut, Engine, ExternType, Instance, InstancePre, Linker, Module, Result, bail,
    format_err,
};

use super::State;
use super::guard::{self, p1::GuardedP1};

const INIT: &str = "ruby-init: func(args: list<string>) -> ()";
const EVAL: &str = "rb-eval-string-protect: func(str: string) -> tuple<handle<rb-abi-value>, s32>";

/// What runs the script: `ruby [OPTIONS] SCRIPT [ARGS]` as the command
/// would: compiled and run at the top level (not with `load`: in this build
/// a syntax error raised by `load` escapes every `rescue`). `ARGV` holds
/// the script then its arguments (`ruby-init` put them after `-e`); `$0`
/// and `__FILE__` are the script's path, so `main if __FILE__ == $0` works; an uncaught exception is printed as `ruby` prints
/// it and is status 1, `exit N` is N. `exit!` ends the instance with that
/// status through WASI's `proc_exit`, after what was written is flushed (the
/// reactor never runs Ruby's own exit path, nor `at_exit` blocks).
const MAIN: &str = r##"
__wasinetd_status = begin
  $0 = ARGV.shift
  __wasinetd_iseq = begin
    RubyVM::InstructionSequence.compile_file($0)
  rescue SystemCallError => e
    STDERR.write("ruby: #{e.message.sub(/ @ \w+ - .*/m, "")} -- #{$0} (LoadError)\n")
    nil
  end
  __wasinetd_iseq ? (__wasinetd_iseq.eval; 0) : 1
rescue SystemExit => e
  e.status
rescue Exception => e
  if (bt = e.backtrace)
    e.set_backtrace(bt.reject { |l| l.start_with?("eval:") || l.end_with?("'Kernel.eval'") })
  end
  message = begin
    e.full_message(highlight: false)
  rescue Exception
    "#{e.message} (#{e.class})\n"
  end
  (STDERR.write(message) rescue nil)
  1
end
[$stdout, $stderr, STDOUT, STDERR].each { |io| io.flush rescue nil }
exit!(__wasinetd_status) unless __wasinetd_status == 0
"##;

/// Whether `module` is one of these Ruby reactors: it has Ruby's entry
/// points instead of `_start`.
pub(super) fn is_ruby(module: &Module) -> bool {
    module.get_export("_start").is_none()
        && [INIT, EVAL, "_initialize", "cabi_realloc", "memory"]
            .iter()
            .all(|name| module.get_export(name).is_some())
}

/// Links a Ruby reactor against WASI preview 1 behind the guard, with the
/// JavaScript bridge stubbed.
pub(super) fn link(
    engine: &Engine,
    module: &Module,
) -> anyhow::Result<InstancePre<State<GuardedP1>>> {
    let mut linker = Linker::new(engine);
    guard::p1::add_to_linker(&mut linker, |s: &mut State<GuardedP1>| &mut s.wasi)
        .map_err(anyhow::Error::from)?;
    for import in module.imports() {
        let ExternType::Func(ty) = import.ty() else {
            continue;
        };
        let (from, name) = (import.module(), import.name().to_owned());
        match from {
            "canonical_abi" if name.starts_with("resource_drop_") => {
                linker
                    .func_new(from, &name, ty, |_, _, _| Ok(()))
                    .map_err(anyhow::Error::from)?;
            }
            // new, get, clone: the handle is the guest's value itself.
            "canonical_abi" if name.starts_with("resource_") => {
                let i32_to_i32 = matches!(
                    (
                        ty.params().collect::<Vec<_>>().as_slice(),
                        ty.results().collect::<Vec<_>>().as_slice()
                    ),
                    ([wasmtime::ValType::I32], [wasmtime::ValType::I32])
                );
                if !i32_to_i32 {
                    anyhow::bail!("unexpected signature for `canonical_abi::{name}`");
                }
                linker
                    .func_new(from, &name, ty, |_, params, results| {
                        results[0] = params[0];
                        Ok(())
                    })
                    .map_err(anyhow::Error::from)?;
            }
            "rb-js-abi-host" => {
                let call = name.split(':').next().unwrap_or(&name).to_owned();
                linker
                    .func_new(from, &name, ty, move |_, _, _| {
                        Err(wasmtime::Error::new(NoJavaScript(call.clone())))
                    })
                    .map_err(anyhow::Error::from)?;
            }
            _ => {}
        }
    }
    linker
        .instantiate_pre(module)
        .map_err(anyhow::Error::from)
        .context("the Ruby module needs imports that wasinetd does not provide")
}

/// Runs the script named by `args` (`[OPTIONS...] SCRIPT [ARGS...]`, the
/// service's `server_args`) in a fresh `instance`.
pub(super) async fn run(
    mut store: impl AsContextMut<Data = State<GuardedP1>>,
    instance: Instance,
    args: &[String],
) -> Result<()> {
    let mut store = store.as_context_mut();
    let argv = command_line(args)?;
    instance
        .get_typed_func::<(), ()>(&mut store, "_initialize")?
        .call_async(&mut store, ())
        .await?;
    let mut list = Vec::with_capacity(argv.len() * 8);
    for arg in &argv {
        let ptr = guest_string(&mut store, instance, arg).await?;
        list.extend_from_slice(&ptr.to_le_bytes());
        list.extend_from_slice(&(arg.len() as u32 + 1).to_le_bytes());
    }
    let list_ptr = guest_bytes(&mut store, instance, &list, 4).await?;
    instance
        .get_typed_func::<(u32, u32), ()>(&mut store, INIT)?
        .call_async(&mut store, (list_ptr, argv.len() as u32))
        .await?;

    let code = guest_string(&mut store, instance, MAIN).await?;
    let ret = instance
        .get_typed_func::<(u32, u32), u32>(&mut store, EVAL)?
        .call_async(&mut store, (code, MAIN.len() as u32 + 1))
        .await
        // Said plainly, without the wasm backtrace the call adds.
        .map_err(|e| match e.downcast_ref::<NoJavaScript>() {
            Some(no) => wasmtime::Error::new(no.clone()),
            None => e,
        })?;
    let mut tuple = [0u8; 8];
    memory(&mut store, instance)?.read(&store, ret as usize, &mut tuple)?;
    let status = i32::from_le_bytes(tuple[4..].try_into().expect("four bytes"));
    if status != 0 {
        // MAIN rescues every exception; this is Ruby failing beneath it.
        bail!("Ruby failed to run the script (rb_eval_string_protect state {status})");
    }
    Ok(())
}

/// Ruby's `js` library called into the JavaScript bridge (named).
#[derive(Debug, Clone)]
struct NoJavaScript(String);

impl std::fmt::Display for NoJavaScript {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Ruby's `js` library called JavaScript (`{}`); wasinetd has no JavaScript host",
            self.0
        )
    }
}

impl std::error::Error for NoJavaScript {}

/// The command line `ruby-init` gets for `args` (the service's
/// `server_args`: ruby's options, the script, its arguments): ruby's
/// options, then `-e_=0` (so that ruby reads no program from stdin: the
/// script is run by [`MAIN`]), then `--` and the script with its arguments,
/// which become `ARGV`.
fn command_line(args: &[String]) -> Result<Vec<String>> {
    // Options whose value may be the next argument (`-I lib`).
    const WITH_VALUE: [&str; 5] = ["-I", "-r", "-E", "-C", "-F"];
    let mut script = None;
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        if arg == "--" {
            script = Some(i + 1);
            break;
        } else if arg.starts_with("-e") {
            bail!("`server_args`: ruby's `-e` is not offered; the program is a script file");
        } else if WITH_VALUE.contains(&arg) {
            i += 2;
        } else if arg.starts_with('-') {
            i += 1;
        } else {
            script = Some(i);
            break;
        }
    }
    let Some(at) = script.filter(|&at| at < args.len()) else {
        bail!(
            "a Ruby guest runs a script: `server_args` names it (e.g. `server_args = \
             /app/hello.rb`), after any of ruby's own options"
        );
    };
    let options = args[..at].iter().filter(|a| *a != "--");
    let mut argv = vec!["ruby".to_owned(), "-EUTF-8".to_owned()];
    argv.extend(options.cloned());
    argv.extend(["-e_=0".to_owned(), "--".to_owned()]);
    argv.extend_from_slice(&args[at..]);
    Ok(argv)
}

/// `text` NUL-terminated in guest memory (Ruby reads the arguments as C
/// strings); its address.
async fn guest_string(
    store: &mut impl AsContextMut<Data = State<GuardedP1>>,
    instance: Instance,
    text: &str,
) -> Result<u32> {
    let mut bytes = Vec::with_capacity(text.len() + 1);
    bytes.extend_from_slice(text.as_bytes());
    bytes.push(0);
    guest_bytes(store, instance, &bytes, 1).await
}

/// `bytes` copied into memory the guest allocates (`cabi_realloc`); their
/// address.
async fn guest_bytes(
    store: &mut impl AsContextMut<Data = State<GuardedP1>>,
    instance: Instance,
    bytes: &[u8],
    align: u32,
) -> Result<u32> {
    let len = u32::try_from(bytes.len()).map_err(|_| format_err!("argument too long"))?;
    let realloc =
        instance.get_typed_func::<(u32, u32, u32, u32), u32>(&mut *store, "cabi_realloc")?;
    let ptr = realloc.call_async(&mut *store, (0, 0, align, len)).await?;
    memory(store, instance)?
        .write(&mut *store, ptr as usize, bytes)
        .map_err(|_| format_err!("cabi_realloc returned memory out of bounds"))?;
    Ok(ptr)
}

fn memory(
    store: &mut impl AsContextMut<Data = State<GuardedP1>>,
    instance: Instance,
) -> Result<wasmtime::Memory> {
    instance
        .get_memory(&mut *store, "memory")
        .ok_or_else(|| format_err!("the Ruby module exports no memory"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(args: &[&str]) -> Result<Vec<String>> {
        command_line(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn the_command_line_puts_the_script_after_ruby_options() {
        assert_eq!(
            line(&[
                "--disable-gems",
                "-I",
                "lib",
                "-rjson",
                "/app/x.rb",
                "-v",
                "a"
            ])
            .unwrap(),
            [
                "ruby",
                "-EUTF-8",
                "--disable-gems",
                "-I",
                "lib",
                "-rjson",
                "-e_=0",
                "--",
                "/app/x.rb",
                "-v",
                "a",
            ]
        );
        assert_eq!(
            line(&["--", "-odd.rb"]).unwrap(),
            ["ruby", "-EUTF-8", "-e_=0", "--", "-odd.rb"]
        );
    }

    #[test]
    fn no_script_or_a_program_on_the_command_line_is_refused() {
        for args in [
            &[][..],
            &["-W0"],
            &["-I", "lib"],
            &["--"],
            &["-e", "puts 1"],
            &["-eputs"],
        ] {
            assert!(line(args).is_err(), "{args:?}");
        }
    }
}
