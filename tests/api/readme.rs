//! The README's tables are part of the interface: they must say what the code does.

use clap::CommandFactory;
use poem_api::{config::Config, routes};

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md")
}

/// Rows of the README table whose first cell is a `POEM_API_*` variable, or one of
/// OpenTelemetry's `OTEL_*` the server reads itself: (variable, default).
fn config_rows(readme: &str) -> Vec<(String, String)> {
    readme
        .lines()
        .filter(|l| l.starts_with("| `POEM_API_") || l.starts_with("| `OTEL_"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(|c| c.trim().trim_matches('`')).collect();
            (cells[1].to_owned(), cells[2].to_owned())
        })
        .collect()
}

#[test]
fn the_configuration_table_lists_every_variable_with_its_default() {
    let readme = readme();
    let rows = config_rows(&readme);
    let command = Config::command();

    let mut documented = Vec::new();
    for arg in command.get_arguments().filter(|a| a.get_env().is_some()) {
        let env = arg.get_env().unwrap().to_string_lossy().into_owned();
        let default = arg
            .get_default_values()
            .first()
            .map(|v| v.to_string_lossy().into_owned());
        let row = rows.iter().find(|(name, _)| *name == env);
        let (_, documented_default) =
            row.unwrap_or_else(|| panic!("{env} is missing from the README"));
        if let Some(default) = default {
            assert_eq!(documented_default, &default, "README default of {env}");
        }
        documented.push(env);
    }
    for (name, _) in &rows {
        assert!(
            documented.contains(name),
            "the README documents {name}, which the server does not read"
        );
    }
}

#[test]
fn the_endpoint_tables_list_every_route() {
    let readme = readme();
    let spec: serde_json::Value = serde_json::from_str(&routes::openapi().spec()).unwrap();

    for (path, operations) in spec["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            let row = format!("`{} {path}", method.to_uppercase());
            assert!(readme.contains(&row), "{row}` is missing from the README");
        }
    }
    for admin in [
        "GET /healthz",
        "GET /readyz",
        "POST /readyz/disable",
        "POST /readyz/enable",
        "GET /metrics",
        "GET /version",
    ] {
        assert!(
            readme.contains(&format!("`{admin}`")),
            "{admin} is missing from the README"
        );
    }
}
