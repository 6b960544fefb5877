//! What the services of one tenant share while they serve: the count of
//! their running guests against the tenant's `instances`, the sandbox
//! [`Pool`] behind its summed `memory` and `cpu_share`, and its totals.
//!
//! The daemon keeps one [`Tenant`] per tenant name for its whole life, so
//! a reload that changes a tenant's services (or its block) goes on
//! counting the guests its earlier versions still run; services outside
//! any tenant share the implicit one, named "". Its [`totals`](Tenant::totals)
//! are what `/metrics`, `/status` and the dump show of it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::config::TenantSpec;
use crate::metrics::TenantTotals;
use crate::sandbox::Pool;

/// One tenant's running state.
#[derive(Debug, Default)]
pub struct Tenant {
    /// "" for the implicit tenant of untenanted services.
    name: Arc<str>,
    pool: Arc<Pool>,
    active: AtomicU32,
    /// `u32::MAX`: no `instances`.
    instances: AtomicU32,
    accepted: AtomicU64,
    refused_instances: AtomicU64,
    refused_memory: AtomicU64,
}

/// A guest counted against its tenant's `instances`; given back on drop.
#[derive(Debug)]
pub struct TenantSlot(Arc<Tenant>);

impl Drop for TenantSlot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Tenant {
    /// The tenant of services from `spec`'s files (`None`: the implicit
    /// one). Its budgets are set by [`apply`], when a config is switched to.
    pub fn of(spec: Option<&TenantSpec>) -> Arc<Tenant> {
        let name = spec.map_or("", |t| t.name.as_str());
        let mut all = lock(registry());
        all.entry(name.to_string())
            .or_insert_with(|| {
                let tenant = Tenant {
                    name: name.into(),
                    instances: AtomicU32::new(u32::MAX),
                    ..Tenant::default()
                };
                if let Some(spec) = spec {
                    tenant.set(spec);
                }
                Arc::new(tenant)
            })
            .clone()
    }

    fn set(&self, spec: &TenantSpec) {
        self.pool.set(spec.memory, spec.cpu_share);
        let instances = spec.instances.unwrap_or(u32::MAX);
        self.instances.store(instances, Ordering::Release);
    }

    /// Its name; "" for the implicit tenant.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sandbox pool its guests run in.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Its guests running now.
    pub fn active(&self) -> u32 {
        self.active.load(Ordering::Acquire)
    }

    /// Its `instances`, if set.
    pub fn instances(&self) -> Option<u32> {
        let n = self.instances.load(Ordering::Acquire);
        (n != u32::MAX).then_some(n)
    }

    /// Connections its services accepted, whether then refused or served.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Connections refused for its `instances` and its `memory`.
    pub fn refused(&self) -> (u64, u64) {
        (
            self.refused_instances.load(Ordering::Relaxed),
            self.refused_memory.load(Ordering::Relaxed),
        )
    }

    /// Everything counted for it, read now.
    pub fn totals(&self) -> TenantTotals {
        use crate::admission::Refusal;
        let (instances, memory) = self.refused();
        TenantTotals {
            name: self.name.clone(),
            active: self.active(),
            instances: self.instances(),
            accepted: self.accepted(),
            refused: [
                (Refusal::TenantInstances.as_str(), instances),
                (Refusal::TenantMemory.as_str(), memory),
            ],
            cpu: self.pool.cpu_used(),
            memory: self.pool.memory_used(),
            memory_limit: self.pool.memory_limit(),
            cpu_share: self.pool.weight(),
        }
    }

    /// Counts one accepted connection.
    pub fn accept(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// A slot for one more guest, or why not: its `instances` are all
    /// running, or its `memory` is all held.
    pub fn take(self: &Arc<Self>) -> Result<TenantSlot, crate::admission::Refusal> {
        use crate::admission::Refusal;
        if self.pool.memory_exhausted() {
            self.refused_memory.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::TenantMemory);
        }
        let max = self.instances.load(Ordering::Acquire);
        let taken = self
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            });
        if taken.is_err() {
            self.refused_instances.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::TenantInstances);
        }
        Ok(TenantSlot(self.clone()))
    }
}

/// Sets every tenant's budgets to `tenants`' (a config now served), and
/// returns those tenants by name: the ones the admin endpoints and the
/// dump show.
pub fn apply(tenants: &[Arc<TenantSpec>]) -> Vec<Arc<Tenant>> {
    let mut applied: Vec<Arc<Tenant>> = (tenants.iter())
        .map(|spec| {
            let tenant = Tenant::of(Some(spec));
            tenant.set(spec);
            tenant
        })
        .collect();
    applied.sort_by(|a, b| a.name.cmp(&b.name));
    applied
}

fn registry() -> &'static Mutex<HashMap<String, Arc<Tenant>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Arc<Tenant>>>> = OnceLock::new();
    REGISTRY.get_or_init(Mutex::default)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing can panic while the lock is held.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
