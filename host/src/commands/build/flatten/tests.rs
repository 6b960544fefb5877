//! The flattening on components and modules made to componentize-py's
//! shape, run before and after in wasmtime.

mod component {
    use std::sync::{Arc, Mutex};

    use wasmtime::component::{Component, Linker};
    use wasmtime::{Engine, Store};

    use super::super::*;

    /// componentize-py's shape in miniature: a shim whose table the fix-up
    /// fills with a lowered import (after the memory exists), `env` owning
    /// memory and table, a library filling its slot at `__table_base` and
    /// calling through the table and the shim, and an init module giving a
    /// slot to a function another library takes the address of.
    const DYLINKED: &str = r#"(component
      (import "host" (func $host (param "s" string)))
      (core module $shim
        (table (export "$imports") 1 1 funcref)
        (func (export "0") (param i32 i32)
          local.get 0 local.get 1 i32.const 0 call_indirect (param i32 i32)))
      (core module $env
        (import "x" "f" (func (param i32 i32)))
        (memory (export "memory") 1)
        (table (export "__indirect_function_table") 4 funcref)
        (global (export "lib:table_base") i32 (i32.const 1))
        (global (export "GOT.func.double") (mut i32) (i32.const 3)))
      (core module $lib
        (import "env" "memory" (memory 1))
        (import "env" "__indirect_function_table" (table 0 funcref))
        (import "env" "__table_base" (global $tb i32))
        (import "env" "GOT.func.double" (global $double (mut i32)))
        (import "env" "shim" (func $shim (param i32 i32)))
        (func $inc (param i32) (result i32) local.get 0 i32.const 1 i32.add)
        (func (export "double") (param i32) (result i32) local.get 0 i32.const 2 i32.mul)
        (func (export "run") (result i32)
          i32.const 100 i32.const 2 call $shim
          i32.const 20 global.get $tb call_indirect (param i32) (result i32)
          global.get $double call_indirect (param i32) (result i32))
        (data (i32.const 100) "hi")
        (elem (global.get $tb) func $inc))
      (core module $init
        (import "env" "__indirect_function_table" (table 0 funcref))
        (import "lib" "double" (func $d (param i32) (result i32)))
        (elem (i32.const 3) func $d))
      (core module $fixup
        (import "" "$imports" (table 1 1 funcref))
        (import "" "0" (func $f (param i32 i32)))
        (elem (i32.const 0) func $f))
      (core instance $shim (instantiate $shim))
      (core instance $env (instantiate $env
        (with "x" (instance (export "f" (func $shim "0"))))))
      (core instance $lib (instantiate $lib (with "env" (instance
        (export "memory" (memory $env "memory"))
        (export "__indirect_function_table" (table $env "__indirect_function_table"))
        (export "__table_base" (global $env "lib:table_base"))
        (export "GOT.func.double" (global $env "GOT.func.double"))
        (export "shim" (func $shim "0"))))))
      (core func $lowered (canon lower (func $host) (memory (core memory $env "memory"))))
      (core instance (instantiate $fixup (with "" (instance
        (export "$imports" (table $shim "$imports"))
        (export "0" (func $lowered))))))
      (core instance (instantiate $init
        (with "env" (instance $env)) (with "lib" (instance $lib))))
      (func (export "run") (result s32) (canon lift (core func $lib "run"))))"#;

    /// Runs the component's `run`: what it returned and what `host` was given.
    fn run(bytes: &[u8]) -> (i32, Vec<String>) {
        let engine = Engine::default();
        let component = Component::new(&engine, bytes).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut linker = Linker::new(&engine);
        let log = seen.clone();
        linker
            .root()
            .func_wrap("host", move |_, (s,): (String,)| {
                log.lock().unwrap().push(s);
                Ok(())
            })
            .unwrap();
        let mut store = Store::new(&engine, ());
        let instance = linker.instantiate(&mut store, &component).unwrap();
        let run = instance
            .get_typed_func::<(), (i32,)>(&mut store, "run")
            .unwrap();
        let (value,) = run.call(&mut store, ()).unwrap();
        let seen = seen.lock().unwrap().clone();
        (value, seen)
    }

    /// The core instantiations of a component, and the element offsets of
    /// its non-empty modules that are not constants.
    fn shape(bytes: &[u8]) -> (usize, usize) {
        let (mut instantiations, mut dynamic_offsets) = (0, 0);
        for payload in Parser::new(0).parse_all(bytes) {
            match payload.unwrap() {
                Payload::InstanceSection(s) => {
                    instantiations += s
                        .into_iter()
                        .filter(|i| matches!(i, Ok(Instance::Instantiate { .. })))
                        .count();
                }
                Payload::ElementSection(s) => {
                    for e in s {
                        if let wasmparser::ElementKind::Active { offset_expr, .. } = e.unwrap().kind
                        {
                            let op = offset_expr.get_operators_reader().read().unwrap();
                            dynamic_offsets +=
                                usize::from(matches!(op, wasmparser::Operator::GlobalGet { .. }));
                        }
                    }
                }
                _ => {}
            }
        }
        (instantiations, dynamic_offsets)
    }

    #[test]
    fn a_dynamically_linked_component_runs_the_same_flattened() {
        let original = wat::parse_str(DYLINKED).unwrap();
        assert_eq!(run(&original), (42, vec!["hi".to_string()]));
        assert_eq!(shape(&original), (5, 1));
        let flat = flatten(&original).unwrap().expect("dynamically linked");
        assert_eq!(run(&flat), (42, vec!["hi".to_string()]));
        // shim, merged (env, lib, init), fix-up; every offset a constant.
        assert_eq!(shape(&flat), (3, 0));
    }

    /// Damaged input is an error or passes through, never a panic: every
    /// byte of the miniature, in turn, replaced by a few values.
    #[test]
    fn damaged_components_never_panic() {
        let original = wat::parse_str(DYLINKED).unwrap();
        for at in 0..original.len() {
            for value in [0x00, 0x01, 0x7f, 0x80, 0xff, original[at] ^ 0x01] {
                let mut damaged = original.clone();
                damaged[at] = value;
                let outcome = std::panic::catch_unwind(|| flatten(&damaged).map(|_| ()));
                assert!(outcome.is_ok(), "byte {at} set to {value:#x} panicked");
            }
        }
    }

    #[test]
    fn a_component_without_a_dynamic_linker_is_left_alone() {
        let plain = wat::parse_str(
            r#"(component
              (core module $m (func (export "run") (result i32) i32.const 7))
              (core instance $i (instantiate $m))
              (func (export "run") (result s32) (canon lift (core func $i "run"))))"#,
        )
        .unwrap();
        assert!(flatten(&plain).unwrap().is_none());
    }

    #[test]
    fn bytes_that_are_not_a_component_are_an_error() {
        assert!(flatten(b"\0asm\x01\0\0\0").is_err());
        assert!(flatten(b"not wasm").is_err());
    }
}

mod module {
    use wasmparser::{ElementKind, ExternalKind, Parser, Payload};

    use super::super::merge::{Member, Source, merge};

    fn wat(text: &str) -> Vec<u8> {
        wat::parse_str(text).unwrap()
    }

    #[test]
    fn imports_between_members_resolve_and_table_offsets_fold() {
        let env = wat(r#"(module
            (table (export "table") 4 funcref)
            (global (export "base") i32 (i32.const 2)))"#);
        let lib = wat(r#"(module
            (import "env" "table" (table 0 funcref))
            (import "env" "base" (global $base i32))
            (import "x" "outside" (func $o))
            (func $f (export "f") call $o)
            (elem (global.get $base) func $f $f))"#);
        let members = [
            Member {
                bytes: &env,
                sources: vec![],
            },
            Member {
                bytes: &lib,
                sources: vec![
                    Source::Member(0, "table".into()),
                    Source::Member(0, "base".into()),
                    Source::Outside("o".into()),
                ],
            },
        ];
        let merged = merge(&members).unwrap();
        wasmparser::Validator::new()
            .validate_all(&merged.bytes)
            .unwrap();
        let (mut offsets, mut imports, mut exports) = (Vec::new(), Vec::new(), Vec::new());
        for payload in Parser::new(0).parse_all(&merged.bytes) {
            match payload.unwrap() {
                Payload::ElementSection(s) => {
                    for e in s {
                        if let ElementKind::Active { offset_expr, .. } = e.unwrap().kind {
                            let op = offset_expr.get_operators_reader().read().unwrap();
                            offsets.push(format!("{op:?}"));
                        }
                    }
                }
                Payload::ImportSection(s) => {
                    for i in s.into_imports() {
                        let i = i.unwrap();
                        imports.push(format!("{}.{}", i.module, i.name));
                    }
                }
                Payload::ExportSection(s) => {
                    for e in s {
                        exports.push(e.unwrap().name.to_string());
                    }
                }
                _ => {}
            }
        }
        assert_eq!(offsets, ["I32Const { value: 2 }"]);
        assert_eq!(imports, ["x.o"]);
        assert_eq!(exports, ["0:table", "0:base", "1:f"]);
        // Defined functions keep their names (for backtraces and profiles).
        let mut names = Vec::new();
        for payload in Parser::new(0).parse_all(&merged.bytes) {
            if let Payload::CustomSection(c) = payload.unwrap()
                && let wasmparser::KnownCustom::Name(reader) = c.as_known()
            {
                for name in reader {
                    if let wasmparser::Name::Function(map) = name.unwrap() {
                        names.extend(map.into_iter().map(|n| n.unwrap().name.to_string()));
                    }
                }
            }
        }
        assert_eq!(names, ["f"]);
        assert_eq!(merged.imports, vec![("o".to_string(), ExternalKind::Func)]);
    }

    #[test]
    fn a_member_importing_from_a_later_one_is_refused() {
        let a = wat(r#"(module (import "b" "f" (func)))"#);
        let b = wat(r#"(module (func (export "f")))"#);
        let members = [
            Member {
                bytes: &a,
                sources: vec![Source::Member(1, "f".into())],
            },
            Member {
                bytes: &b,
                sources: vec![],
            },
        ];
        assert!(merge(&members).is_err());
    }
}
