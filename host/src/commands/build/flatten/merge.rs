//! Merging core modules into one: a static link of modules that were linked
//! at instantiation time.
//!
//! Each member's imports are either another member's export (resolved here,
//! to the index the merged module gives that item) or something outside,
//! which the merged module imports once, from the module `x` under a name of
//! its own. Every export of member `m` is exported again as `m:NAME`.
//!
//! Constant expressions are folded where they read an immutable global whose
//! value is now known: this is what turns `global.get $__table_base` element
//! offsets into constants, and so lets wasmtime fill the table lazily.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use super::member::{Parsed, kind_of, slot};

use anyhow::{Context, Result, bail};
use wasm_encoder::reencode::{self, Reencode};
use wasm_encoder::{
    CodeSection, ConstExpr, DataCountSection, DataSection, ElementSection, Elements, ExportKind,
    ExportSection, FunctionSection, GlobalSection, ImportSection, MemorySection, Module, NameMap,
    NameSection, TableSection, TypeSection,
};
use wasmparser::{DataKind, ElementItems, ElementKind, ExternalKind, Operator};

/// Where one import of a member comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// Export `name` of an earlier member.
    Member(usize, String),
    /// Something outside the merge, named by the caller's key.
    Outside(String),
}

/// One module to merge, with a source for each of its imports, in order.
pub struct Member<'a> {
    pub bytes: &'a [u8],
    pub sources: Vec<Source>,
}

/// The merged module, and the outside keys it imports (from `x`, under the
/// key itself as the name).
pub struct Merged {
    pub bytes: Vec<u8>,
    pub imports: Vec<(String, ExternalKind)>,
}

/// The name the merged module exports member `member`'s export `name` under.
pub fn export_name(member: usize, name: &str) -> String {
    format!("{member}:{name}")
}

/// An index that does not exist in the member it was read from.
#[derive(Debug)]
pub struct BadIndex(&'static str, u32);

impl fmt::Display for BadIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} index {} out of range", self.0, self.1)
    }
}

impl std::error::Error for BadIndex {}

/// A member's indices, mapped into the merged module.
#[derive(Default)]
struct Map {
    types: u32,
    spaces: [Vec<u32>; 4],
    elements: u32,
    data: u32,
}

impl Map {
    fn get(&self, kind: ExternalKind, index: u32) -> Result<u32, reencode::Error<BadIndex>> {
        let space = &self.spaces[slot(kind)];
        space
            .get(index as usize)
            .copied()
            .ok_or(reencode::Error::UserError(BadIndex(
                match kind {
                    ExternalKind::Func | ExternalKind::FuncExact => "function",
                    ExternalKind::Table => "table",
                    ExternalKind::Memory => "memory",
                    _ => "global",
                },
                index,
            )))
    }
}

impl Reencode for Map {
    type Error = BadIndex;

    fn type_index(&mut self, ty: u32) -> Result<u32, reencode::Error<BadIndex>> {
        Ok(self.types + ty)
    }
    fn function_index(&mut self, f: u32) -> Result<u32, reencode::Error<BadIndex>> {
        self.get(ExternalKind::Func, f)
    }
    fn table_index(&mut self, t: u32) -> Result<u32, reencode::Error<BadIndex>> {
        self.get(ExternalKind::Table, t)
    }
    fn memory_index(&mut self, m: u32) -> Result<u32, reencode::Error<BadIndex>> {
        self.get(ExternalKind::Memory, m)
    }
    fn global_index(&mut self, g: u32) -> Result<u32, reencode::Error<BadIndex>> {
        self.get(ExternalKind::Global, g)
    }
    fn element_index(&mut self, e: u32) -> Result<u32, reencode::Error<BadIndex>> {
        Ok(self.elements + e)
    }
    fn data_index(&mut self, d: u32) -> Result<u32, reencode::Error<BadIndex>> {
        Ok(self.data + d)
    }
}

/// Merges `members` (each may only import from earlier ones) into one module.
pub fn merge(members: &[Member<'_>]) -> Result<Merged> {
    let parsed = members
        .iter()
        .enumerate()
        .map(|(i, m)| Parsed::new(m.bytes).with_context(|| format!("member {i}")))
        .collect::<Result<Vec<_>>>()?;
    for (i, (m, p)) in members.iter().zip(&parsed).enumerate() {
        if m.sources.len() != p.imports.len() {
            bail!(
                "member {i}: {} sources for {} imports",
                m.sources.len(),
                p.imports.len()
            );
        }
        if p.imports_of(ExternalKind::Tag) > 0 {
            bail!("member {i} imports a tag");
        }
    }

    // Outside imports come first in each index space, then every member's
    // definitions, member by member.
    let mut outside: Vec<(String, ExternalKind, usize, usize)> = Vec::new();
    let mut outside_index: HashMap<(String, usize), u32> = HashMap::new();
    let mut counts = [0u32; 4];
    for (mi, (m, p)) in members.iter().zip(&parsed).enumerate() {
        for (ii, (source, import)) in m.sources.iter().zip(&p.imports).enumerate() {
            if let Source::Outside(key) = source {
                let s = slot(kind_of(&import.ty));
                if let std::collections::hash_map::Entry::Vacant(e) =
                    outside_index.entry((key.clone(), s))
                {
                    e.insert(counts[s]);
                    counts[s] += 1;
                    outside.push((key.clone(), kind_of(&import.ty), mi, ii));
                }
            }
        }
    }
    let mut maps: Vec<Map> = Vec::with_capacity(members.len());
    let mut next = counts;
    let (mut types, mut elements, mut data) = (0u32, 0u32, 0u32);
    for (mi, (m, p)) in members.iter().zip(&parsed).enumerate() {
        let mut map = Map {
            types,
            elements,
            data,
            ..Map::default()
        };
        for (source, import) in m.sources.iter().zip(&p.imports) {
            let kind = kind_of(&import.ty);
            let index = match source {
                Source::Outside(key) => outside_index[&(key.clone(), slot(kind))],
                Source::Member(j, name) => {
                    if *j >= mi {
                        bail!("member {mi} imports from member {j}, which is not earlier");
                    }
                    let export = parsed[*j]
                        .exports
                        .iter()
                        .find(|e| e.name == name)
                        .with_context(|| format!("member {j} has no export {name:?}"))?;
                    if slot(export.kind) != slot(kind) {
                        bail!(
                            "member {j}'s export {name:?} is a {:?}, not a {kind:?}",
                            export.kind
                        );
                    }
                    maps[*j]
                        .get(kind, export.index)
                        .map_err(|e| anyhow::anyhow!("{e:?}"))?
                }
            };
            map.spaces[slot(kind)].push(index);
        }
        let defined = [
            p.funcs.len(),
            p.tables.len(),
            p.memories.len(),
            p.globals.len(),
        ];
        for (s, n) in defined.into_iter().enumerate() {
            map.spaces[s].extend(next[s]..next[s] + n as u32);
            next[s] += n as u32;
        }
        types += p.num_types;
        elements += p.elements.len() as u32;
        data += p.data.len() as u32;
        maps.push(map);
    }

    let mut module = Module::new();
    let mut type_section = TypeSection::new();
    for (p, map) in parsed.iter().zip(&mut maps) {
        if let Some(reader) = p.types.clone() {
            map.parse_type_section(&mut type_section, reader)?;
        }
    }
    module.section(&type_section);

    let mut imports = ImportSection::new();
    for (key, _, mi, ii) in &outside {
        let ty = maps[*mi].entity_type(parsed[*mi].imports[*ii].ty)?;
        imports.import("x", key, ty);
    }
    module.section(&imports);

    let mut functions = FunctionSection::new();
    let mut tables = TableSection::new();
    let mut memories = MemorySection::new();
    for (p, map) in parsed.iter().zip(&mut maps) {
        for ty in &p.funcs {
            functions.function(map.types + ty);
        }
        for table in &p.tables {
            map.parse_table(&mut tables, table.clone())?;
        }
        for memory in &p.memories {
            memories.memory(map.memory_type(*memory)?);
        }
    }
    module.section(&functions);
    module.section(&tables);
    module.section(&memories);

    // Globals, folding what is constant; `known` holds the value of each
    // immutable i32 global of the merged module that has one.
    let mut globals = GlobalSection::new();
    let mut known: HashMap<u32, i32> = HashMap::new();
    for (p, map) in parsed.iter().zip(&mut maps) {
        let first = map.spaces[3].len() - p.globals.len();
        for (gi, global) in p.globals.iter().enumerate() {
            let value = fold(&global.init_expr, map, &known);
            let init = match value {
                Some(v) => ConstExpr::i32_const(v),
                None => map.const_expr(global.init_expr.clone())?,
            };
            if let (Some(v), false) = (value, global.ty.mutable) {
                known.insert(map.spaces[3][first + gi], v);
            }
            globals.global(map.global_type(global.ty)?, &init);
        }
    }
    module.section(&globals);

    let mut exports = ExportSection::new();
    for (mi, (p, map)) in parsed.iter().zip(&maps).enumerate() {
        for e in &p.exports {
            let kind = match e.kind {
                ExternalKind::Func | ExternalKind::FuncExact => ExportKind::Func,
                ExternalKind::Table => ExportKind::Table,
                ExternalKind::Memory => ExportKind::Memory,
                ExternalKind::Global => ExportKind::Global,
                ExternalKind::Tag => bail!("member {mi} exports a tag"),
            };
            let index = map
                .get(e.kind, e.index)
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            exports.export(&export_name(mi, e.name), kind, index);
        }
    }
    module.section(&exports);

    let mut element_section = ElementSection::new();
    for (p, map) in parsed.iter().zip(&mut maps) {
        for element in &p.elements {
            let items = match element.items.clone() {
                ElementItems::Functions(r) => Elements::Functions(Cow::Owned(
                    r.into_iter()
                        .map(|f| Ok(map.function_index(f?)?))
                        .collect::<Result<Vec<u32>>>()?,
                )),
                ElementItems::Expressions(ty, r) => Elements::Expressions(
                    map.ref_type(ty)?,
                    Cow::Owned(
                        r.into_iter()
                            .map(|e| Ok(map.const_expr(e?)?))
                            .collect::<Result<Vec<ConstExpr>>>()?,
                    ),
                ),
            };
            match &element.kind {
                ElementKind::Passive => element_section.passive(items),
                ElementKind::Declared => element_section.declared(items),
                ElementKind::Active {
                    table_index,
                    offset_expr,
                } => {
                    let table = map.table_index(table_index.unwrap_or(0))?;
                    let offset = match fold(offset_expr, map, &known) {
                        Some(v) => ConstExpr::i32_const(v),
                        None => map.const_expr(offset_expr.clone())?,
                    };
                    element_section.active(Some(table), &offset, items)
                }
            };
        }
    }
    module.section(&element_section);

    let data_count: u32 = parsed.iter().map(|p| p.data.len() as u32).sum();
    if data_count > 0 {
        module.section(&DataCountSection { count: data_count });
    }
    let mut code = CodeSection::new();
    for (p, map) in parsed.iter().zip(&mut maps) {
        for body in &p.bodies {
            map.parse_function_body(&mut code, body.clone())?;
        }
    }
    module.section(&code);

    let mut data_section = DataSection::new();
    for (p, map) in parsed.iter().zip(&mut maps) {
        for segment in &p.data {
            match &segment.kind {
                DataKind::Passive => data_section.passive(segment.data.iter().copied()),
                DataKind::Active {
                    memory_index,
                    offset_expr,
                } => {
                    let offset = match fold(offset_expr, map, &known) {
                        Some(v) => ConstExpr::i32_const(v),
                        None => map.const_expr(offset_expr.clone())?,
                    };
                    let memory = map.memory_index(*memory_index)?;
                    data_section.active(memory, &offset, segment.data.iter().copied())
                }
            };
        }
    }
    module.section(&data_section);

    // Each defined function keeps its name (imports are named by their
    // definitions).
    let mut names = NameMap::new();
    let mut named = Vec::new();
    for (p, map) in parsed.iter().zip(&maps) {
        let imported = p.imports_of(ExternalKind::Func) as u32;
        for (index, name) in &p.names {
            if *index >= imported
                && let Some(merged) = map.spaces[0].get(*index as usize)
            {
                named.push((*merged, *name));
            }
        }
    }
    named.sort_by_key(|(index, _)| *index);
    named.dedup_by_key(|(index, _)| *index);
    for (index, name) in named {
        names.append(index, name);
    }
    let mut name_section = NameSection::new();
    name_section.functions(&names);
    module.section(&name_section);

    Ok(Merged {
        bytes: module.finish(),
        imports: outside
            .into_iter()
            .map(|(k, kind, _, _)| (k, kind))
            .collect(),
    })
}

/// The value of an i32 constant expression, if every global it reads is an
/// immutable one whose value is known.
fn fold(expr: &wasmparser::ConstExpr<'_>, map: &Map, known: &HashMap<u32, i32>) -> Option<i32> {
    let mut stack: Vec<i32> = Vec::new();
    let mut ops = expr.get_operators_reader();
    while !ops.eof() {
        match ops.read().ok()? {
            Operator::I32Const { value } => stack.push(value),
            Operator::GlobalGet { global_index } => {
                let merged = *map.spaces[3].get(global_index as usize)?;
                stack.push(*known.get(&merged)?);
            }
            op @ (Operator::I32Add | Operator::I32Sub | Operator::I32Mul) => {
                let (b, a) = (stack.pop()?, stack.pop()?);
                stack.push(match op {
                    Operator::I32Add => a.wrapping_add(b),
                    Operator::I32Sub => a.wrapping_sub(b),
                    _ => a.wrapping_mul(b),
                });
            }
            Operator::End => break,
            _ => return None,
        }
    }
    (stack.len() == 1).then(|| stack[0])
}
