//! Writing the flattened component: every item in its original order, with
//! the merged instance where the last member was instantiated, what depends
//! on it moved after it, and every core index renumbered.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, Result, bail};

use wasm_encoder::{
    Alias, CanonicalFunctionSection, CanonicalOption, Component, ComponentAliasSection,
    ComponentExportKind, ComponentOuterAliasKind, ComponentSectionId, InstanceSection, ModuleArg,
    RawSection,
};
use wasmparser::{CanonicalFunction, ComponentAlias, ComponentExternalKind, Instance};

use super::graph::Graph;
use super::merge::{Merged, export_name};
use super::{Item, Space, export_kind, parse_key, space};

/// An empty core module: what a merged member's module becomes, so that the
/// module index space keeps its numbers without carrying the code twice.
const EMPTY_MODULE: &[u8] = b"\0asm\x01\0\0\0";

struct Emitter {
    component: Component,
    /// Old index to new, per core index space.
    map: HashMap<Space, Vec<Option<u32>>>,
    next: HashMap<Space, u32>,
    merged: Option<u32>,
}

impl Emitter {
    fn get(&self, space: Space, old: u32) -> Option<u32> {
        self.map
            .get(&space)
            .and_then(|m| m.get(old as usize).copied().flatten())
    }

    fn need(&self, space: Space, old: u32) -> Result<u32> {
        self.get(space, old)
            .with_context(|| format!("{space:?} {old} is not written yet"))
    }

    /// Gives the next new index of `space`, to old index `old` if there is one.
    fn define(&mut self, space: Space, old: Option<u32>) -> u32 {
        let next = self.next.entry(space).or_default();
        let new = *next;
        *next += 1;
        if let Some(old) = old {
            let map = self.map.entry(space).or_default();
            if map.len() <= old as usize {
                map.resize(old as usize + 1, None);
            }
            map[old as usize] = Some(new);
        }
        new
    }

    fn options(&self, options: &[wasmparser::CanonicalOption]) -> Result<Vec<CanonicalOption>> {
        use wasmparser::CanonicalOption as O;
        options
            .iter()
            .map(|o| {
                Ok(match *o {
                    O::UTF8 => CanonicalOption::UTF8,
                    O::UTF16 => CanonicalOption::UTF16,
                    O::CompactUTF16 => CanonicalOption::CompactUTF16,
                    O::Memory(m) => CanonicalOption::Memory(self.need(Space::Memory, m)?),
                    O::Realloc(f) => CanonicalOption::Realloc(self.need(Space::Func, f)?),
                    O::PostReturn(f) => CanonicalOption::PostReturn(self.need(Space::Func, f)?),
                    O::Callback(f) => CanonicalOption::Callback(self.need(Space::Func, f)?),
                    O::Async => CanonicalOption::Async,
                    O::CoreType(t) => CanonicalOption::CoreType(t),
                    O::Gc => CanonicalOption::Gc,
                })
            })
            .collect()
    }
}

impl Graph<'_, '_> {
    pub(super) fn emit(&self, members: &[u32], merged: &Merged) -> Result<Vec<u8>> {
        let member_items: HashSet<usize> = members
            .iter()
            .map(|m| self.def(Space::Instance, *m))
            .collect::<Result<_>>()?;
        let last_member = *member_items.iter().max().context("no members")?;
        let member_of: HashMap<u32, usize> =
            members.iter().enumerate().map(|(i, m)| (*m, i)).collect();

        // A module is emptied when every instantiation of it is merged.
        let mut kept_modules = HashSet::new();
        let mut merged_modules = HashSet::new();
        for (n, item) in self.items.iter().enumerate() {
            if let Item::Instance(Instance::Instantiate { module_index, .. }) = item {
                if member_items.contains(&n) {
                    merged_modules.insert(*module_index);
                } else {
                    kept_modules.insert(*module_index);
                }
            }
        }
        let last_module = self
            .items
            .iter()
            .rposition(|i| matches!(i, Item::Module(_)));
        let merged_module = self.modules.len() as u32;

        let mut e = Emitter {
            component: Component::new(),
            map: HashMap::new(),
            next: HashMap::new(),
            merged: None,
        };
        let mut deferred: Vec<usize> = Vec::new();
        let mut module_index = 0u32;
        for (n, item) in self.items.iter().enumerate() {
            match item {
                Item::Raw(id, data) => {
                    e.component.section(&RawSection { id: *id, data });
                }
                Item::Module(bytes) => {
                    let empty = merged_modules.contains(&module_index)
                        && !kept_modules.contains(&module_index);
                    let data = if empty { EMPTY_MODULE } else { bytes };
                    e.component.section(&RawSection {
                        id: ComponentSectionId::CoreModule as u8,
                        data,
                    });
                    module_index += 1;
                    if Some(n) == last_module {
                        e.component.section(&RawSection {
                            id: ComponentSectionId::CoreModule as u8,
                            data: &merged.bytes,
                        });
                    }
                }
                _ if member_items.contains(&n) => {
                    if n == last_member {
                        self.instantiate_merged(&mut e, merged, merged_module)?;
                        let waiting = std::mem::take(&mut deferred);
                        for d in waiting {
                            if !self.try_emit(&mut e, d, &member_of)? {
                                deferred.push(d);
                            }
                        }
                    }
                }
                _ => {
                    if !self.try_emit(&mut e, n, &member_of)? {
                        if self.defines[n].is_none() {
                            bail!("item {n} defines no core index and cannot wait");
                        }
                        deferred.push(n);
                    }
                }
            }
        }
        if let Some(d) = deferred.first() {
            bail!("item {d} depends on something that is never written");
        }
        Ok(e.component.finish())
    }

    fn instantiate_merged(&self, e: &mut Emitter, merged: &Merged, module: u32) -> Result<()> {
        let mut exports = Vec::new();
        for (key, kind) in &merged.imports {
            let (sp, old) = parse_key(key)?;
            let new = e
                .get(sp, old)
                .with_context(|| format!("the merged module needs {key}, which depends on it"))?;
            exports.push((key.as_str(), export_kind(*kind), new));
        }
        let mut section = InstanceSection::new();
        section.export_items(exports);
        e.component.section(&section);
        let bag = e.define(Space::Instance, None);
        let mut section = InstanceSection::new();
        section.instantiate(module, [("x", ModuleArg::Instance(bag))]);
        e.component.section(&section);
        e.merged = Some(e.define(Space::Instance, None));
        Ok(())
    }

    /// Writes item `n` if everything it refers to is written; false if not yet.
    fn try_emit(&self, e: &mut Emitter, n: usize, member_of: &HashMap<u32, usize>) -> Result<bool> {
        let old = self.defines[n].map(|(_, i)| i);
        match &self.items[n] {
            Item::Instance(Instance::Instantiate { module_index, args }) => {
                let Some(args) = args
                    .iter()
                    .map(|a| {
                        Some((
                            a.name,
                            ModuleArg::Instance(e.get(Space::Instance, a.index)?),
                        ))
                    })
                    .collect::<Option<Vec<_>>>()
                else {
                    return Ok(false);
                };
                let mut section = InstanceSection::new();
                section.instantiate(*module_index, args);
                e.component.section(&section);
                e.define(Space::Instance, old);
            }
            Item::Instance(Instance::FromExports(exports)) => {
                let mut list = Vec::new();
                for x in exports.iter() {
                    let Some(new) = e.get(space(x.kind)?, x.index) else {
                        return Ok(false);
                    };
                    list.push((x.name, export_kind(x.kind), new));
                }
                let mut section = InstanceSection::new();
                section.export_items(list);
                e.component.section(&section);
                e.define(Space::Instance, old);
            }
            Item::Alias(ComponentAlias::CoreInstanceExport {
                kind,
                instance_index,
                name,
            }) => {
                let (instance, name) = match member_of.get(instance_index) {
                    Some(m) => match e.merged {
                        Some(merged) => (merged, export_name(*m, name)),
                        None => return Ok(false),
                    },
                    None => match e.get(Space::Instance, *instance_index) {
                        Some(i) => (i, name.to_string()),
                        None => return Ok(false),
                    },
                };
                let mut section = ComponentAliasSection::new();
                section.alias(Alias::CoreInstanceExport {
                    instance,
                    kind: export_kind(*kind),
                    name: &name,
                });
                e.component.section(&section);
                e.define(space(*kind)?, old);
            }
            Item::Alias(alias) => {
                let mut section = ComponentAliasSection::new();
                section.alias(component_alias(alias)?);
                e.component.section(&section);
            }
            Item::Canon(canon) => {
                let mut section = CanonicalFunctionSection::new();
                let lift = matches!(canon, CanonicalFunction::Lift { .. });
                match canon {
                    CanonicalFunction::Lift {
                        core_func_index,
                        type_index,
                        options,
                    } => match (e.get(Space::Func, *core_func_index), e.options(options)) {
                        (Some(f), Ok(o)) => section.lift(f, *type_index, o),
                        _ => bail!("a lifted function depends on something not written yet"),
                    },
                    CanonicalFunction::Lower {
                        func_index,
                        options,
                    } => match e.options(options) {
                        Ok(o) => section.lower(*func_index, o),
                        Err(_) => return Ok(false),
                    },
                    CanonicalFunction::ResourceNew { resource } => section.resource_new(*resource),
                    CanonicalFunction::ResourceDrop { resource } => {
                        section.resource_drop(*resource)
                    }
                    CanonicalFunction::ResourceRep { resource } => section.resource_rep(*resource),
                    other => bail!("unsupported canonical function {other:?}"),
                };
                e.component.section(&section);
                if !lift {
                    e.define(Space::Func, old);
                }
            }
            Item::Raw(..) | Item::Module(_) => unreachable!("written in order"),
        }
        Ok(true)
    }
}

fn component_alias<'a>(alias: &'a ComponentAlias<'a>) -> Result<Alias<'a>> {
    use wasmparser::ComponentOuterAliasKind as K;
    Ok(match *alias {
        ComponentAlias::InstanceExport {
            kind,
            instance_index,
            name,
        } => Alias::InstanceExport {
            instance: instance_index,
            kind: match kind {
                ComponentExternalKind::Module => ComponentExportKind::Module,
                ComponentExternalKind::Func => ComponentExportKind::Func,
                ComponentExternalKind::Value => ComponentExportKind::Value,
                ComponentExternalKind::Type => ComponentExportKind::Type,
                ComponentExternalKind::Instance => ComponentExportKind::Instance,
                ComponentExternalKind::Component => ComponentExportKind::Component,
            },
            name,
        },
        ComponentAlias::Outer { kind, count, index } => Alias::Outer {
            kind: match kind {
                K::CoreModule => ComponentOuterAliasKind::CoreModule,
                K::CoreType => ComponentOuterAliasKind::CoreType,
                K::Type => ComponentOuterAliasKind::Type,
                K::Component => ComponentOuterAliasKind::Component,
            },
            count,
            index,
        },
        ComponentAlias::CoreInstanceExport { .. } => unreachable!("renumbered by the caller"),
    })
}
