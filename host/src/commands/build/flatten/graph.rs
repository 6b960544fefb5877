//! The component's core index spaces, what defines each entry, and which
//! instances the merge takes in.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, Result, bail};
use wasmparser::{
    CanonicalFunction, ComponentAlias, ExternalKind, Instance, InstantiationArgKind, Parser,
    Payload, TypeRef,
};

use super::member::kind_of;
use super::merge::{self, Member, Source};
use super::{Item, Space, key, parse_key, space};

/// A module's imports, `(module, name, type)`, in order.
type Imports = Vec<(String, String, TypeRef)>;
/// A module's exports, `(name, kind, index)`.
type Exports = Vec<(String, ExternalKind, u32)>;

/// The component's core index spaces and what defines each entry.
pub(super) struct Graph<'i, 'a> {
    pub(super) items: &'i [Item<'a>],
    pub(super) modules: Vec<&'a [u8]>,
    /// For each core index space, the number of the item defining each entry.
    defs: HashMap<Space, Vec<usize>>,
    /// For each item, the core index it defines, if any.
    pub(super) defines: Vec<Option<(Space, u32)>>,
}

impl<'i, 'a> Graph<'i, 'a> {
    pub(super) fn new(items: &'i [Item<'a>]) -> Result<Self> {
        let mut g = Graph {
            items,
            modules: Vec::new(),
            defs: HashMap::new(),
            defines: Vec::new(),
        };
        for (n, item) in items.iter().enumerate() {
            let defined = match item {
                Item::Module(m) => {
                    g.modules.push(m);
                    None
                }
                Item::Instance(_) => Some(Space::Instance),
                Item::Alias(ComponentAlias::CoreInstanceExport { kind, .. }) => Some(space(*kind)?),
                Item::Canon(CanonicalFunction::Lift { .. }) => None,
                Item::Canon(_) => Some(Space::Func),
                _ => None,
            };
            g.defines.push(defined.map(|s| {
                let list = g.defs.entry(s).or_default();
                list.push(n);
                (s, list.len() as u32 - 1)
            }));
        }
        Ok(g)
    }

    pub(super) fn def(&self, space: Space, index: u32) -> Result<usize> {
        match self.defs.get(&space).and_then(|l| l.get(index as usize)) {
            Some(n) => Ok(*n),
            None => bail!("{space:?} {index} is not defined"),
        }
    }

    fn instance(&self, index: u32) -> Result<&'i Instance<'a>> {
        match &self.items[self.def(Space::Instance, index)?] {
            Item::Instance(i) => Ok(i),
            _ => unreachable!("instance space holds instances"),
        }
    }

    fn module_exports(&self, module: u32) -> Result<Exports> {
        Ok(self.interface(module)?.1)
    }

    /// The core instance whose module defines the function table that the
    /// others import: the dynamic linker's `env`.
    pub(super) fn find_env(&self) -> Result<Option<u32>> {
        for (index, n) in self
            .defs
            .get(&Space::Instance)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let Item::Instance(Instance::Instantiate { module_index, .. }) = &self.items[*n] else {
                continue;
            };
            let exports = self.module_exports(*module_index)?;
            let table = exports.iter().any(|(name, kind, _)| {
                name == "__indirect_function_table" && *kind == ExternalKind::Table
            });
            let memory = exports
                .iter()
                .any(|(_, kind, _)| *kind == ExternalKind::Memory);
            if table
                && memory
                && self
                    .imports(*module_index)?
                    .iter()
                    .all(|i| kind_of(i) == ExternalKind::Func)
            {
                return Ok(Some(index as u32));
            }
        }
        Ok(None)
    }

    fn imports(&self, module: u32) -> Result<Vec<TypeRef>> {
        Ok(self
            .import_names(module)?
            .into_iter()
            .map(|(_, _, t)| t)
            .collect())
    }

    fn import_names(&self, module: u32) -> Result<Imports> {
        Ok(self.interface(module)?.0)
    }

    /// Module `module`'s imports and exports.
    #[allow(clippy::type_complexity)]
    fn interface(
        &self,
        module: u32,
    ) -> Result<(
        Vec<(String, String, TypeRef)>,
        Vec<(String, ExternalKind, u32)>,
    )> {
        let bytes = self
            .modules
            .get(module as usize)
            .context("no such module")?;
        let (mut imports, mut exports) = (Vec::new(), Vec::new());
        for payload in Parser::new(0).parse_all(bytes) {
            match payload? {
                Payload::ImportSection(s) => {
                    for i in s.into_imports() {
                        let i = i?;
                        imports.push((i.module.to_string(), i.name.to_string(), i.ty));
                    }
                }
                Payload::ExportSection(s) => {
                    for e in s {
                        let e = e?;
                        exports.push((e.name.to_string(), e.kind, e.index));
                    }
                }
                _ => {}
            }
        }
        Ok((imports, exports))
    }

    /// The core instances a core item depends on. Canonical functions do not
    /// count: a lowered import that needs the merged memory is not something
    /// to merge but something that must come after the merge.
    fn instance_deps(
        &self,
        item: usize,
        out: &mut HashSet<u32>,
        seen: &mut HashSet<usize>,
    ) -> Result<()> {
        if !seen.insert(item) {
            return Ok(());
        }
        match &self.items[item] {
            Item::Instance(Instance::Instantiate { args, .. }) => {
                for arg in args.iter() {
                    out.insert(arg.index);
                    self.instance_deps(self.def(Space::Instance, arg.index)?, out, seen)?;
                }
            }
            Item::Instance(Instance::FromExports(exports)) => {
                for e in exports.iter() {
                    self.instance_deps(self.def(space(e.kind)?, e.index)?, out, seen)?;
                }
            }
            Item::Alias(ComponentAlias::CoreInstanceExport { instance_index, .. }) => {
                out.insert(*instance_index);
                self.instance_deps(self.def(Space::Instance, *instance_index)?, out, seen)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// The instances to merge, in instantiation order: `env` and every
    /// instantiation that reaches it other than through a canonical function.
    pub(super) fn members(&self, env: u32) -> Result<Vec<u32>> {
        let mut members = Vec::new();
        for (index, n) in self.defs[&Space::Instance].iter().enumerate() {
            if !matches!(self.items[*n], Item::Instance(Instance::Instantiate { .. })) {
                continue;
            }
            let mut deps = HashSet::new();
            self.instance_deps(*n, &mut deps, &mut HashSet::new())?;
            if index as u32 == env || deps.contains(&env) {
                members.push(index as u32);
            }
        }
        // An instance that needs something built from a member (a function
        // lowered with the merged memory, say) has to come after the merge.
        loop {
            let mut dropped = None;
            for &m in members.iter().rev() {
                let Instance::Instantiate { module_index, .. } = self.instance(m)? else {
                    unreachable!()
                };
                for (module, name, _) in self.import_names(*module_index)? {
                    if let Source::Outside(key) = self.source(&members, m, &module, &name)? {
                        let (sp, index) = parse_key(&key)?;
                        let mut deps = HashSet::new();
                        self.all_deps(self.def(sp, index)?, &mut deps, &mut HashSet::new())?;
                        if members.iter().any(|x| deps.contains(x)) {
                            dropped = Some(m);
                            break;
                        }
                    }
                }
                if dropped.is_some() {
                    break;
                }
            }
            match dropped {
                Some(m) => members.retain(|x| *x != m),
                None => return Ok(members),
            }
        }
    }

    /// Every core instance a core item depends on, canonical options included.
    fn all_deps(
        &self,
        item: usize,
        out: &mut HashSet<u32>,
        seen: &mut HashSet<usize>,
    ) -> Result<()> {
        self.instance_deps(item, out, seen)?;
        let options = match &self.items[item] {
            Item::Canon(CanonicalFunction::Lower { options, .. }) => options,
            _ => return Ok(()),
        };
        for o in options.iter() {
            let (sp, index) = match *o {
                wasmparser::CanonicalOption::Memory(m) => (Space::Memory, m),
                wasmparser::CanonicalOption::Realloc(f)
                | wasmparser::CanonicalOption::PostReturn(f)
                | wasmparser::CanonicalOption::Callback(f) => (Space::Func, f),
                _ => continue,
            };
            let def = self.def(sp, index)?;
            self.instance_deps(def, out, seen)?;
            self.all_deps(def, out, seen)?;
        }
        Ok(())
    }

    /// Where import `(module, name)` of member instance `instance` comes from.
    fn source(&self, members: &[u32], instance: u32, module: &str, name: &str) -> Result<Source> {
        let Instance::Instantiate { args, .. } = self.instance(instance)? else {
            unreachable!("members are instantiations");
        };
        let arg = args
            .iter()
            .find(|a| a.name == module && a.kind == InstantiationArgKind::Instance)
            .with_context(|| format!("instance {instance} has no argument {module:?}"))?;
        let member_of = |i: u32| members.iter().position(|m| *m == i);
        if let Some(m) = member_of(arg.index) {
            return Ok(Source::Member(m, name.to_string()));
        }
        match self.instance(arg.index)? {
            Instance::FromExports(exports) => {
                let e = exports
                    .iter()
                    .find(|e| e.name == name)
                    .with_context(|| format!("argument {module:?} has no {name:?}"))?;
                let sp = space(e.kind)?;
                if let Item::Alias(ComponentAlias::CoreInstanceExport {
                    instance_index,
                    name,
                    ..
                }) = &self.items[self.def(sp, e.index)?]
                    && let Some(m) = member_of(*instance_index)
                {
                    return Ok(Source::Member(m, name.to_string()));
                }
                Ok(Source::Outside(key(sp, e.index)))
            }
            Instance::Instantiate { .. } => {
                bail!("argument {module:?} of instance {instance} is an outside instance")
            }
        }
    }

    pub(super) fn merge(&self, members: &[u32]) -> Result<merge::Merged> {
        let mut list = Vec::new();
        for &instance in members {
            let Instance::Instantiate { module_index, .. } = self.instance(instance)? else {
                unreachable!()
            };
            let sources = self
                .import_names(*module_index)?
                .iter()
                .map(|(module, name, _)| self.source(members, instance, module, name))
                .collect::<Result<Vec<_>>>()?;
            list.push(Member {
                bytes: self
                    .modules
                    .get(*module_index as usize)
                    .context("no such module")?,
                sources,
            });
        }
        merge::merge(&list)
    }
}
