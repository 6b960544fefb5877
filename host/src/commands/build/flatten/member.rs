//! One member module, read: the sections the merge needs, in order.

use anyhow::{Result, bail};
use wasmparser::{ExternalKind, Parser, Payload, TypeRef};

/// The parts of one member module that the merge reads.
#[derive(Default)]
pub(super) struct Parsed<'a> {
    pub(super) types: Option<wasmparser::TypeSectionReader<'a>>,
    pub(super) num_types: u32,
    pub(super) imports: Vec<wasmparser::Import<'a>>,
    pub(super) funcs: Vec<u32>,
    pub(super) tables: Vec<wasmparser::Table<'a>>,
    pub(super) memories: Vec<wasmparser::MemoryType>,
    pub(super) globals: Vec<wasmparser::Global<'a>>,
    pub(super) exports: Vec<wasmparser::Export<'a>>,
    pub(super) elements: Vec<wasmparser::Element<'a>>,
    pub(super) data: Vec<wasmparser::Data<'a>>,
    pub(super) bodies: Vec<wasmparser::FunctionBody<'a>>,
    /// Function names from the `name` section, for backtraces and profiles.
    pub(super) names: Vec<(u32, &'a str)>,
}

impl<'a> Parsed<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Result<Self> {
        let mut p = Parsed::default();
        for payload in Parser::new(0).parse_all(bytes) {
            match payload? {
                Payload::CustomSection(c) => {
                    if let wasmparser::KnownCustom::Name(names) = c.as_known() {
                        for name in names.into_iter().flatten() {
                            if let wasmparser::Name::Function(map) = name {
                                p.names = map
                                    .into_iter()
                                    .flatten()
                                    .map(|n| (n.index, n.name))
                                    .collect();
                            }
                        }
                    }
                }
                Payload::Version { .. } | Payload::End(_) => {}
                Payload::TypeSection(s) => {
                    // Types, not recursion groups: a group may hold several.
                    for group in s.clone() {
                        p.num_types += group?.types().len() as u32;
                    }
                    p.types = Some(s);
                }
                Payload::ImportSection(s) => {
                    for import in s.into_imports() {
                        p.imports.push(import?);
                    }
                }
                Payload::FunctionSection(s) => p.funcs = s.into_iter().collect::<Result<_, _>>()?,
                Payload::TableSection(s) => p.tables = s.into_iter().collect::<Result<_, _>>()?,
                Payload::MemorySection(s) => {
                    p.memories = s.into_iter().collect::<Result<_, _>>()?
                }
                Payload::GlobalSection(s) => p.globals = s.into_iter().collect::<Result<_, _>>()?,
                Payload::ExportSection(s) => p.exports = s.into_iter().collect::<Result<_, _>>()?,
                Payload::ElementSection(s) => {
                    p.elements = s.into_iter().collect::<Result<_, _>>()?
                }
                Payload::DataSection(s) => p.data = s.into_iter().collect::<Result<_, _>>()?,
                Payload::DataCountSection { .. } | Payload::CodeSectionStart { .. } => {}
                Payload::CodeSectionEntry(body) => p.bodies.push(body),
                Payload::StartSection { .. } => bail!("a member has a start function"),
                other => bail!(
                    "a member has an unexpected section {:?}",
                    other.as_section()
                ),
            }
        }
        Ok(p)
    }

    pub(super) fn imports_of(&self, kind: ExternalKind) -> usize {
        self.imports
            .iter()
            .filter(|i| kind_of(&i.ty) == kind)
            .count()
    }
}

pub(super) fn kind_of(ty: &TypeRef) -> ExternalKind {
    match ty {
        TypeRef::Func(_) | TypeRef::FuncExact(_) => ExternalKind::Func,
        TypeRef::Table(_) => ExternalKind::Table,
        TypeRef::Memory(_) => ExternalKind::Memory,
        TypeRef::Global(_) => ExternalKind::Global,
        TypeRef::Tag(_) => ExternalKind::Tag,
    }
}

pub(super) fn slot(kind: ExternalKind) -> usize {
    match kind {
        ExternalKind::Func | ExternalKind::FuncExact => 0,
        ExternalKind::Table => 1,
        ExternalKind::Memory => 2,
        ExternalKind::Global => 3,
        ExternalKind::Tag => 4,
    }
}
