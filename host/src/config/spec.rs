//! Raw blocks -> [`ServiceSpec`]s: the checks that need every block (one
//! `defaults`, unique ids, `disable` / `disabled` / `enabled`), each enabled
//! `service` block handed to `service`. A service with any error is
//! reported and left out; the others still load.

use std::collections::HashMap;
use std::sync::Arc;

use super::defaults::Defaults;
use super::etc_services::ServicesDb;
use super::parse::{Op, RawBlock};
use super::service::service;
use super::tenant::{self, TenantSpec};
use super::values;
use super::{Diags, Env, Report, ServiceSpec};

/// Builds every enabled, valid service from `blocks` (in reading order),
/// and every valid tenant from `tenants`. The admin's services come first,
/// so that no tenant's file can take an id the admin's files use.
pub(super) fn build(
    mut blocks: Vec<RawBlock>,
    tenants: Vec<RawBlock>,
    env: &Env,
    diags: &mut Diags,
) -> (Vec<ServiceSpec>, Vec<Arc<TenantSpec>>) {
    let tenants = tenant_specs(&tenants, diags);
    blocks.sort_by_key(|b| b.tenant.is_some());
    let mut defaults: Option<(Defaults, &RawBlock)> = None;
    for block in blocks.iter().filter(|b| b.service.is_none()) {
        let mut report = Report::new(diags, block.seq, &block.file, None);
        match &defaults {
            None => defaults = Some((Defaults::from_block(block, &mut report), block)),
            Some((_, first)) => {
                let message = format!(
                    "a second `defaults` block (the first is at {}:{}); merge them into one",
                    first.file.display(),
                    first.line
                );
                report.error(block.line, message);
            }
        }
    }
    let defaults = defaults.map(|(d, _)| d).unwrap_or_default();

    let mut db = ServicesDb::new(env.services_file);
    let mut ids: HashMap<String, &RawBlock> = HashMap::new();
    let mut services = Vec::new();
    for block in &blocks {
        let Some(name) = &block.service else { continue };
        let (id, disabled) = prescan(block, name);
        let of = match &block.tenant {
            // A tenant whose block did not load runs nothing; its block's
            // errors say why.
            Some(t) => match tenants.iter().find(|spec| spec.name == *t) {
                Some(spec) => Some(spec.clone()),
                None => continue,
            },
            None => None,
        };
        let mut report = Report::new(diags, block.seq, &block.file, Some(id.clone()))
            .of(block.tenant.as_deref());
        if disabled || defaults.turns_off(&id) {
            // Left out without validation; only lines that could not be read
            // at all are reported.
            for (line, message) in &block.problems {
                report.error(*line, message.clone());
            }
            continue;
        }
        if let Some(first) = ids.get(&id) {
            let message = format!(
                "service id `{id}` is already used by the service at {}:{}; give one of them another `id`",
                first.file.display(),
                first.line
            );
            report.error(block.line, message);
        } else {
            ids.insert(id.clone(), block);
        }
        let mut spec = service(
            block,
            name,
            id,
            &defaults.inherited,
            env,
            &mut db,
            &mut report,
        );
        if let (Some(spec), Some(of)) = (&mut spec, of) {
            tenant::police(spec, block, &of, &mut report);
            spec.tenant = Some(of);
        }
        if let Some(spec) = spec.filter(|_| report.errors == 0) {
            services.push(spec);
        }
    }
    (services, tenants)
}

/// The valid `tenant` blocks; a second block of one name is an error.
fn tenant_specs(blocks: &[RawBlock], diags: &mut Diags) -> Vec<Arc<TenantSpec>> {
    let mut specs: Vec<Arc<TenantSpec>> = Vec::new();
    let mut seen: HashMap<&str, &RawBlock> = HashMap::new();
    for block in blocks {
        let Some(name) = block.service.as_deref() else {
            continue;
        };
        let mut report = Report::new(diags, block.seq, &block.file, None);
        if let Some(first) = seen.insert(name, block) {
            let message = format!(
                "a second `tenant {name}` block (the first is at {}:{}); merge them into one",
                first.file.display(),
                first.line
            );
            report.error(block.line, message);
            specs.retain(|t| t.name != name);
            continue;
        }
        if let Some(spec) = TenantSpec::from_block(block, &mut report) {
            specs.push(Arc::new(spec));
        }
    }
    specs
}

/// The block's id and whether it says `disable = yes`, read before the rest
/// so a disabled block is not validated. Bad lines are reported later.
fn prescan(block: &RawBlock, name: &str) -> (String, bool) {
    let mut id = name.to_string();
    let mut disabled = false;
    for raw in block.attrs.iter().filter(|a| a.op == Op::Assign) {
        match (raw.name.as_str(), &raw.values[..]) {
            ("id", [one]) => id = one.clone(),
            ("disable", words) => disabled |= values::yes_no("disable", words) == Ok(true),
            _ => {}
        }
    }
    (id, disabled)
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::super::tests::parse_env;

    fn parse(text: &str) -> Config {
        parse_env(text, "echo 7/tcp\n", &[])
    }

    fn errors(config: &Config) -> Vec<String> {
        config
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.line, e.message))
            .collect()
    }

    fn names(config: &Config) -> Vec<&str> {
        config.services.iter().map(|s| s.name.as_str()).collect()
    }

    const GOOD: &str = "type = UNLISTED\n port = 1\n server = a.wasm";

    #[test]
    fn a_broken_service_does_not_stop_the_others() {
        let text = format!(
            "service a {{\n rlimit_ass = 1M\n {GOOD}\n}}\nservice b {{\n {GOOD}\n}}\n\
             service c {{\n wait = yes\n port = x\n {GOOD}\n"
        );
        let config = parse(&text);
        assert_eq!(names(&config), ["b"]);
        assert_eq!(
            errors(&config),
            [
                "2: unknown attribute `rlimit_ass`; did you mean `rlimit_as`?",
                "12: `service c` has no closing `}`",
                // No `wait = yes` error: an unreadable line may have said
                // `socket_type = dgram`.
                "14: `port` takes a number from 0 to 65535 (0: any free port), not `x`",
                "16: `port` is set twice in this block (lines 14 and 16); keep one",
            ]
        );
        assert_eq!(config.errors[0].service.as_deref(), Some("a"));
    }

    #[test]
    fn a_second_id_is_an_error_at_the_second_block() {
        let text = format!(
            "service a {{\n {GOOD}\n}}\nservice a {{\n {GOOD}\n}}\nservice a {{\n id = a2\n {GOOD}\n}}\n\
             service b {{\n id = a\n {GOOD}\n}}\n"
        );
        let config = parse(&text);
        assert_eq!(names(&config), ["a", "a2"]);
        let message = "service id `a` is already used by the service at t.conf:1; give one of them another `id`";
        assert_eq!(
            errors(&config),
            [format!("6: {message}"), format!("17: {message}")]
        );
    }

    #[test]
    fn disabled_services_are_left_out_without_validation() {
        let text = format!(
            "defaults {{\n disabled = b\n}}\nservice a {{\n disable = yes\n flags = REUSE\n}}\n\
             service b {{\n socket_type = dgram\n}}\nservice c {{\n {GOOD}\n}}\nservice d {{\n disable = yes\n port 1\n}}\n"
        );
        let config = parse(&text);
        assert_eq!(names(&config), ["c"]);
        // A line that cannot be read at all is still an error.
        assert_eq!(
            errors(&config),
            ["18: expected `NAME = VALUE` (or `+=`, `-=`), not `port 1`"]
        );
        assert!(config.warnings.is_empty());
    }

    #[test]
    fn enabled_lists_the_only_services_on() {
        let text = format!(
            "defaults {{\n enabled = b\n}}\nservice a {{\n {GOOD}\n}}\nservice b {{\n {GOOD}\n}}\n\
             service c {{\n id = b2\n {GOOD}\n}}\n"
        );
        assert_eq!(names(&parse(&text)), ["b"]);
    }

    #[test]
    fn a_second_defaults_block_is_an_error_and_ignored() {
        let text = format!(
            "defaults {{\n instances = 2\n}}\ndefaults {{\n instances = 3\n}}\nservice a {{\n {GOOD}\n}}\n"
        );
        let config = parse(&text);
        assert_eq!(
            errors(&config),
            ["4: a second `defaults` block (the first is at t.conf:1); merge them into one"]
        );
        assert_eq!(config.services[0].instances, crate::config::Cap::At(2));
    }

    #[test]
    fn defaults_apply_wherever_the_block_is() {
        let text = format!("service a {{\n {GOOD}\n}}\ndefaults {{\n rlimit_as = UNLIMITED\n}}\n");
        assert_eq!(
            parse(&text).services[0].limits.memory,
            super::super::MAX_MEMORY
        );
    }

    #[test]
    fn errors_in_defaults_do_not_break_services() {
        let text = format!("defaults {{\n instances = none\n}}\nservice a {{\n {GOOD}\n}}\n");
        let config = parse(&text);
        assert_eq!(names(&config), ["a"]);
        assert_eq!(
            errors(&config),
            ["2: `instances` takes a number from 1 up, or UNLIMITED, not `none`"]
        );
        assert_eq!(config.errors[0].service, None);
    }
}
