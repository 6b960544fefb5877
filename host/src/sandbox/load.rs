//! Loading a guest: its bytes compiled (or mapped from the cache, or
//! compiled in a child process), linked against WASI behind the guard, and
//! pre-instantiated, as a [`Guest`].

use std::sync::Arc;

use anyhow::{Context as _, bail};
use wasmtime::component::Component;
use wasmtime::{Engine, InstancePre, Linker, Module};
use wasmtime_wasi::p2::bindings::CommandPre;

use super::cache::{self, Cache, MAX_AGE, Origin};
use super::compile::{self, CompileLimits};
use super::guard::{self, p1::GuardedP1};
use super::{Guest, GuestKind, P2Wasi, Sandbox, SandboxOptions, State, connection, engine, ruby};

impl Sandbox {
    /// Compiles a guest (a core module or a component, binary or text) and
    /// prepares it for fast instantiation.
    pub fn load(&self, bytes: &[u8]) -> anyhow::Result<Guest> {
        self.load_or_not(bytes, true)?
            .context("the guest was neither compiled nor cached")
    }

    /// Like [`Sandbox::load`], but only from the compiled-code cache:
    /// `None` when the guest would have to be compiled.
    pub fn load_cached(&self, bytes: &[u8]) -> anyhow::Result<Option<Guest>> {
        self.load_or_not(bytes, false)
    }

    fn load_or_not(&self, bytes: &[u8], may_compile: bool) -> anyhow::Result<Option<Guest>> {
        use wasmtime::wasmparser::Parser;
        if may_compile {
            compile::check_shape(bytes, &self.compile)?;
        }
        let mut asks_connection = false;
        let (kind, origin) = if Parser::is_component(bytes) {
            let Some((component, origin)) = self
                .compile::<Component>(bytes, may_compile)
                .context("invalid component")?
            else {
                return Ok(None);
            };
            asks_connection = connection::is_imported(&self.engine, &component);
            let pre = link_component(&self.engine, &component)?;
            (GuestKind::Component(pre), origin)
        } else if let Some(what) = not_wasm(bytes) {
            bail!(
                "not a WebAssembly module or component (no `\\0asm` header: {what}); a guest \
                 is built for wasm32-wasip1 (a module) or wasm32-wasip2 (a component), e.g. \
                 `cargo build --release --target wasm32-wasip2`; a script runs under an \
                 interpreter guest, as the README's \"Scripts\" section shows"
            );
        } else if Parser::is_core_wasm(bytes) || std::str::from_utf8(bytes).is_ok() {
            // Text is accepted too: `.wat` guests are handy for tests.
            let Some((module, origin)) = self
                .compile::<Module>(bytes, may_compile)
                .context("invalid module")?
            else {
                return Ok(None);
            };
            if ruby::is_ruby(&module) {
                (GuestKind::Ruby(ruby::link(&self.engine, &module)?), origin)
            } else {
                (
                    GuestKind::Module(link_module(&self.engine, &module)?),
                    origin,
                )
            }
        } else {
            bail!(
                "not a WebAssembly module or component (no `\\0asm` header); a guest is built \
                 for wasm32-wasip1 (a module) or wasm32-wasip2 (a component)"
            );
        };
        Ok(Some(Guest {
            engine: self.engine.clone(),
            lane: self.lane.clone(),
            stop_all: self.stop_all.clone(),
            fd_budget: self.fd_budget.clone(),
            kind,
            origin,
            asks_connection,
        }))
    }

    /// Native code for `bytes`, from the cache when there is one, else
    /// compiled within the compile limits (`None` if it may not be).
    fn compile<A: cache::Artefact>(
        &self,
        bytes: &[u8],
        may_compile: bool,
    ) -> anyhow::Result<Option<(A, Origin)>> {
        if !may_compile {
            let hit = self.cache().and_then(|c| c.get(&self.engine, bytes));
            return Ok(hit.map(|a| (a, Origin::Cached)));
        }
        let precompile = || match &self.compile.isolate {
            Some(exe) => compile::precompile_isolated(
                exe,
                bytes,
                A::KIND,
                (self.pooling, engine::reservation_for(self.max_instances)),
                &self.compile,
            ),
            None => A::precompile(&self.engine, bytes).map_err(anyhow::Error::from),
        };
        let compiled = match (self.cache(), &self.compile.isolate) {
            (Some(cache), _) => cache.get_or_compile(&self.engine, bytes, precompile)?,
            (None, Some(_)) => {
                let code = precompile()?;
                // SAFETY: `code` is the compiler process's output: this very
                // binary, for an engine of this one's settings; wasmtime
                // checks its header against the engine again.
                let artefact = unsafe { A::from_code(&self.engine, &code) }?;
                (artefact, Origin::Compiled)
            }
            (None, None) => (A::compile(&self.engine, bytes)?, Origin::Compiled),
        };
        Ok(Some(compiled))
    }

    /// The engine a compiler process makes (`wasinetd __compile`): the
    /// settings of a daemon's engine, `pooling` or not, whose memories
    /// reserve `memory_reservation` bytes (the code's bounds checks depend
    /// on it), with a pool of one slot.
    pub fn compiler_engine(pooling: bool, memory_reservation: u64) -> anyhow::Result<Engine> {
        let opts = SandboxOptions {
            max_instances: 1,
            ..SandboxOptions::default()
        };
        Engine::new(&engine::config_with(&opts, pooling, memory_reservation))
            .map_err(anyhow::Error::from)
    }

    /// The compiled-code cache, if one is configured and safe to use. Its
    /// path is checked to still name the folder that was vetted at every
    /// load (start-up, reloads); if it does not, it is vetted afresh.
    fn cache(&self) -> Option<Arc<Cache>> {
        let mut slot = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(Some(cache)) = &*slot
            && let Err(e) = cache.still_at_its_path()
        {
            tracing::warn!(
                "cache directory `{}` changed since it was vetted ({e:#}); vetting it again",
                cache.dir().display()
            );
            *slot = None;
        }
        slot.get_or_insert_with(|| Cache::open(&self.cache_setting).map(Arc::new))
            .clone()
    }

    /// What compiling one guest may cost.
    pub fn compile_limits(&self) -> &CompileLimits {
        &self.compile
    }

    /// Removes cached code unused for [`MAX_AGE`]; call once every guest of
    /// the config is loaded. Does nothing if no guest touched the cache.
    pub fn prune_cache(&self) {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(Some(cache)) = cache {
            let removed = cache.prune(MAX_AGE);
            if removed > 0 {
                tracing::info!(
                    "removed {removed} file(s) unused for {} days from cache `{}`",
                    MAX_AGE.as_secs() / 86_400,
                    cache.dir().display()
                );
            }
        }
    }
}

fn link_module(engine: &Engine, module: &Module) -> anyhow::Result<InstancePre<State<GuardedP1>>> {
    if module.get_export("_start").is_none() {
        bail!("the module exports no `_start`: it is not a WASI command");
    }
    let mut linker = Linker::new(engine);
    guard::p1::add_to_linker(&mut linker, |s: &mut State<GuardedP1>| &mut s.wasi)
        .map_err(anyhow::Error::from)?;
    linker
        .instantiate_pre(module)
        .map_err(anyhow::Error::from)
        .context("the module needs imports that wasinetd does not provide")
}

fn link_component(
    engine: &Engine,
    component: &Component,
) -> anyhow::Result<CommandPre<State<P2Wasi>>> {
    let mut linker = wasmtime::component::Linker::new(engine);
    guard::p2::add_to_linker(&mut linker).map_err(anyhow::Error::from)?;
    connection::add_to_linker(&mut linker, |s: &mut State<P2Wasi>| &mut s.wasi.connection)?;
    let pre = linker
        .instantiate_pre(component)
        .map_err(anyhow::Error::from)
        .context("the component needs imports that wasinetd does not provide")?;
    CommandPre::new(pre)
        .map_err(anyhow::Error::from)
        .context("the component is not a `wasi:cli/command`")
}

/// What a file that is plainly not a guest is, for the error: a native
/// program or a script (text that is not WebAssembly text).
fn not_wasm(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x7fELF") {
        Some("it is a native executable")
    } else if bytes.starts_with(b"#!") {
        Some("it is a script")
    } else if bytes.starts_with(b"MZ") || bytes.starts_with(&[0xcf, 0xfa, 0xed, 0xfe]) {
        Some("it is a native executable for another system")
    } else {
        None
    }
}
