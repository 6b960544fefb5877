//! Flattening a dynamically linked component: one core module where the
//! build tool left a dozen.
//!
//! componentize-py links CPython the way a dynamic loader would: an `env`
//! module owns the memory and the function table, libc, libpython and the
//! runtime are separate core modules whose element segments fill that
//! imported table at `global.get $__table_base` offsets, and an init module
//! adds the slots for functions that other libraries take the address of.
//! wasmtime can only fill a table lazily when the module that defines it
//! holds the segments at constant offsets, so every connection made 5,811
//! function references (over 40% of a hello connection's CPU) and resolved
//! some 2,000 imports between fourteen instances.
//!
//! After the build (and its snapshot) every one of those links is fixed, so
//! this pass merges the env module and every instance that hangs off it into
//! one core module (merge.rs), and rewrites the component around it: each
//! alias of a merged instance's export becomes an alias of the merged
//! instance, and what depended on the merged instances moves after it. What
//! stays outside is what the merged code imports: the indirect-call shim that
//! wit-component puts between lowered imports and the memory that does not
//! exist yet, the fix-up that fills it, and the lowered functions.
//!
//! Anything of an unexpected shape is an error; the caller then keeps the
//! component as built, which works, only slower.

mod emit;
mod graph;
mod member;
mod merge;
#[cfg(test)]
mod tests;

use anyhow::{Context, Result, bail};
use wasm_encoder::{ComponentSectionId, ExportKind};
use wasmparser::{CanonicalFunction, ComponentAlias, ExternalKind, Instance, Parser, Payload};

use graph::Graph;

/// One top-level entry of the component, in order.
enum Item<'a> {
    /// A section copied as it is: types, imports, exports, component
    /// instances, nested components, custom sections.
    Raw(u8, &'a [u8]),
    Module(&'a [u8]),
    Instance(Instance<'a>),
    Alias(ComponentAlias<'a>),
    Canon(CanonicalFunction),
}

/// The core index spaces the rewrite renumbers (modules keep their numbers).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Space {
    Func,
    Table,
    Memory,
    Global,
    Instance,
}

fn space(kind: ExternalKind) -> Result<Space> {
    Ok(match kind {
        ExternalKind::Func | ExternalKind::FuncExact => Space::Func,
        ExternalKind::Table => Space::Table,
        ExternalKind::Memory => Space::Memory,
        ExternalKind::Global => Space::Global,
        ExternalKind::Tag => bail!("core tags are not supported"),
    })
}

fn export_kind(kind: ExternalKind) -> ExportKind {
    match kind {
        ExternalKind::Func | ExternalKind::FuncExact => ExportKind::Func,
        ExternalKind::Table => ExportKind::Table,
        ExternalKind::Memory => ExportKind::Memory,
        ExternalKind::Global => ExportKind::Global,
        ExternalKind::Tag => ExportKind::Tag,
    }
}

/// Returns `bytes` flattened, or `None` when it is not dynamically linked
/// (no core module owns a table exported as `__indirect_function_table`).
pub fn flatten(bytes: &[u8]) -> Result<Option<Vec<u8>>> {
    // Everything below may then take the input's indices and counts as
    // consistent.
    wasmparser::Validator::new()
        .validate_all(bytes)
        .context("the component as built does not validate")?;
    let items = parse(bytes)?;
    let graph = Graph::new(&items)?;
    let Some(env) = graph.find_env()? else {
        return Ok(None);
    };
    let members = graph.members(env)?;
    if members.len() < 2 {
        return Ok(None);
    }
    let merged = graph.merge(&members)?;
    let out = graph.emit(&members, &merged)?;
    wasmparser::Validator::new()
        .validate_all(&out)
        .context("the flattened component does not validate")?;
    Ok(Some(out))
}

fn parse(bytes: &[u8]) -> Result<Vec<Item<'_>>> {
    let mut items = Vec::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload?;
        if depth > 0 {
            match payload {
                Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
                Payload::End(_) => depth -= 1,
                // A nested component could name one of the modules that the
                // merge empties.
                Payload::ComponentAliasSection(s) => {
                    for a in s {
                        if let ComponentAlias::Outer {
                            kind: wasmparser::ComponentOuterAliasKind::CoreModule,
                            ..
                        } = a?
                        {
                            bail!("outer aliases of core modules are not supported");
                        }
                    }
                }
                _ => {}
            }
            continue;
        }
        let raw = |id: ComponentSectionId, range: std::ops::Range<usize>| {
            Ok::<_, anyhow::Error>(Item::Raw(id as u8, slice(bytes, range)?))
        };
        match payload {
            Payload::Version { encoding, .. } => {
                if encoding != wasmparser::Encoding::Component {
                    bail!("not a component");
                }
            }
            Payload::End(_) => {}
            Payload::ModuleSection {
                unchecked_range, ..
            } => {
                items.push(Item::Module(slice(bytes, unchecked_range)?));
                depth += 1;
            }
            Payload::ComponentSection {
                unchecked_range, ..
            } => {
                items.push(raw(ComponentSectionId::Component, unchecked_range)?);
                depth += 1;
            }
            Payload::InstanceSection(s) => {
                for i in s {
                    items.push(Item::Instance(i?));
                }
            }
            Payload::ComponentAliasSection(s) => {
                for a in s {
                    let a = a?;
                    if let ComponentAlias::Outer {
                        kind: wasmparser::ComponentOuterAliasKind::CoreModule,
                        ..
                    } = a
                    {
                        bail!("outer aliases of core modules are not supported");
                    }
                    // It would add a core module that `Item::Module` does
                    // not count.
                    if let ComponentAlias::InstanceExport {
                        kind: wasmparser::ComponentExternalKind::Module,
                        ..
                    } = a
                    {
                        bail!("aliases of exported core modules are not supported");
                    }
                    items.push(Item::Alias(a));
                }
            }
            Payload::ComponentCanonicalSection(s) => {
                for c in s {
                    items.push(Item::Canon(c?));
                }
            }
            Payload::CoreTypeSection(s) => {
                items.push(raw(ComponentSectionId::CoreType, s.range())?)
            }
            Payload::ComponentTypeSection(s) => {
                // A resource's destructor is a core function index, which
                // the rewrite renumbers; these sections are copied as
                // they are.
                for ty in s.clone() {
                    if let wasmparser::ComponentType::Resource { dtor: Some(_), .. } = ty? {
                        bail!("resources with destructors are not supported");
                    }
                }
                items.push(raw(ComponentSectionId::Type, s.range())?)
            }
            Payload::ComponentInstanceSection(s) => {
                // A core module given to a component would be one the merge
                // may empty.
                for instance in s.clone() {
                    if let wasmparser::ComponentInstance::Instantiate { args, .. } = instance?
                        && args
                            .iter()
                            .any(|a| a.kind == wasmparser::ComponentExternalKind::Module)
                    {
                        bail!("core modules passed to components are not supported");
                    }
                }
                items.push(raw(ComponentSectionId::Instance, s.range())?)
            }
            Payload::ComponentImportSection(s) => {
                for import in s.clone() {
                    if let wasmparser::ComponentTypeRef::Module(_) = import?.ty {
                        bail!("imported core modules are not supported");
                    }
                }
                items.push(raw(ComponentSectionId::Import, s.range())?)
            }
            Payload::ComponentExportSection(s) => {
                for export in s.clone() {
                    if export?.kind == wasmparser::ComponentExternalKind::Module {
                        bail!("exported core modules are not supported");
                    }
                }
                items.push(raw(ComponentSectionId::Export, s.range())?)
            }
            // Its names are by core index, which the rewrite renumbers.
            Payload::CustomSection(c) if c.name() == "component-name" => {}
            Payload::CustomSection(c) => items.push(Item::Raw(0, slice(bytes, c.range())?)),
            other => bail!("unexpected component section {:?}", other.as_section()),
        }
    }
    Ok(items)
}

/// `bytes[range]`, or an error where a damaged size points past the end.
fn slice(bytes: &[u8], range: std::ops::Range<usize>) -> Result<&[u8]> {
    bytes
        .get(range)
        .context("a section runs past the end of the component")
}

fn parse_key(key: &str) -> Result<(Space, u32)> {
    let space = match key.as_bytes().first() {
        Some(b'f') => Space::Func,
        Some(b't') => Space::Table,
        Some(b'm') => Space::Memory,
        Some(b'g') => Space::Global,
        _ => bail!("bad key {key:?}"),
    };
    Ok((space, key[1..].parse()?))
}

/// The merged module's import name for an outside core item.
fn key(space: Space, index: u32) -> String {
    let prefix = match space {
        Space::Func => "f",
        Space::Table => "t",
        Space::Memory => "m",
        Space::Global => "g",
        Space::Instance => "i",
    };
    format!("{prefix}{index}")
}
