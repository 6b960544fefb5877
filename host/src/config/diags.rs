//! Problems as a load finds them: [`Diags`] collects every error and
//! warning with the load-order number of its file (so they can be put in
//! file order at the end) and the tenants whose files have errors;
//! [`Report`] is how one file's (or one block's) problems reach it.

use std::path::Path;

use super::{Config, ConfigError, ServiceSpec};

/// Errors and warnings as they are found, each with the load-order number of
/// its file so they can be put in file order at the end.
#[derive(Default)]
pub(super) struct Diags {
    list: Vec<(usize, bool, ConfigError)>,
    broken_tenants: Vec<String>,
}

impl Diags {
    pub(super) fn push(&mut self, seq: usize, warning: bool, error: ConfigError) {
        self.list.push((seq, warning, error));
    }

    fn tenant_broken(&mut self, tenant: &str) {
        if !self.broken_tenants.iter().any(|t| t == tenant) {
            self.broken_tenants.push(tenant.to_string());
        }
    }

    pub(super) fn into_config(mut self, services: Vec<ServiceSpec>, digest: String) -> Config {
        // Stable: messages on one line keep the order they were found in.
        self.list.sort_by_key(|(seq, _, e)| (*seq, e.line));
        let (warnings, errors): (Vec<_>, Vec<_>) = self.list.into_iter().partition(|d| d.1);
        Config {
            services,
            errors: errors.into_iter().map(|d| d.2).collect(),
            warnings: warnings.into_iter().map(|d| d.2).collect(),
            tenants: Vec::new(),
            broken_tenants: self.broken_tenants,
            digest,
        }
    }
}

/// Reports problems found in one file (and one block of it, if `service`).
pub(super) struct Report<'a> {
    diags: &'a mut Diags,
    seq: usize,
    file: &'a Path,
    service: Option<String>,
    /// The tenant whose files hold the problems, if any.
    tenant: Option<String>,
    /// Errors reported through this value so far.
    pub(super) errors: usize,
}

impl<'a> Report<'a> {
    pub(super) fn new(
        diags: &'a mut Diags,
        seq: usize,
        file: &'a Path,
        service: Option<String>,
    ) -> Self {
        Report {
            diags,
            seq,
            file,
            service,
            tenant: None,
            errors: 0,
        }
    }

    /// The same, for problems in a file of `tenant` (none: the admin's).
    pub(super) fn of(mut self, tenant: Option<&str>) -> Self {
        self.tenant = tenant.map(str::to_string);
        self
    }

    pub(super) fn error(&mut self, line: u32, message: impl Into<String>) {
        self.errors += 1;
        if let Some(tenant) = &self.tenant {
            self.diags.tenant_broken(tenant);
        }
        self.emit(line, false, message.into());
    }

    pub(super) fn warning(&mut self, line: u32, message: impl Into<String>) {
        self.emit(line, true, message.into());
    }

    fn emit(&mut self, line: u32, warning: bool, message: String) {
        let error = ConfigError {
            file: self.file.to_path_buf(),
            line,
            service: self.service.clone(),
            tenant: self.tenant.clone(),
            message,
        };
        self.diags.push(self.seq, warning, error);
    }
}
