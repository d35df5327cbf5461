//! Snapshots of how the demo estate's first diff reads: the table at 80 and 120 columns (and `--wide`),
//! the markdown and the JSON. Dates, billing months and invoice ids are replaced so the snapshots hold
//! at whatever instant `CSP_SYNC_TEST_NOW` pins (the estate is dated from it, so day counts do not move).

use crate::demo_script;
use crate::estate;
use crate::support::{Env, text};

/// The first diff of the demo (`examples/demo.rs`: the small estate, the demo's config of every module).
fn first_diff(env: &Env, columns: &str, args: &[&str]) -> String {
    let out = env.run_env(args, &[("COLUMNS", columns)]);
    // Woodgrove Bank's Graph app is not consented in the demo estate: the diff reports it (exit 1).
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    text(&out.stdout)
}

fn snapshot(name: &str, value: &str) {
    insta::with_settings!({
        filters => vec![
            (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z", "[time]"),
            (r"\d{4}-\d{2}-\d{2}", "[date]"),
            // The billing period and its Partner Center invoice id move with the pinned instant too.
            (r"\b\d{4}-\d{2}\b", "[month]"),
            (r"\bG\d{6}(\d{4})\b", "G[yyyymm]$1"),
        ],
        prepend_module_to_snapshot => false,
    }, {
        insta::assert_snapshot!(name, value);
    });
}

fn widest(s: &str) -> usize {
    s.lines().map(|l| l.chars().count()).max().unwrap_or(0)
}

#[test]
fn the_demo_estates_first_diff_reads_well_in_every_format() {
    let env = Env::new(&demo_script::options());
    for columns in ["80", "120"] {
        let table = first_diff(&env, columns, &["-o", "table", "diff"]);
        let width: usize = columns.parse().unwrap();
        assert!(widest(&table) <= width, "wider than {width}:\n{table}");
        snapshot(&format!("diff_table_{columns}"), &table);
    }
    let wide = first_diff(&env, "120", &["-o", "table", "--wide", "diff"]);
    assert!(widest(&wide) <= 120, "{wide}");
    snapshot("diff_table_wide_120", &wide);
    // A terminal that reports 0x0 (COLUMNS=0) gets 80 columns, not one per character.
    let zero = first_diff(&env, "0", &["-o", "table", "diff"]);
    assert_eq!(
        zero,
        first_diff(&env, "80", &["-o", "table", "diff"]),
        "COLUMNS=0"
    );
    // Markdown and JSON do not depend on the width.
    for columns in ["80", "120"] {
        let md = first_diff(&env, columns, &["-o", "markdown", "diff"]);
        snapshot("diff_markdown", &md);
        let json = first_diff(&env, columns, &["-o", "json", "diff"]);
        snapshot("diff_json", &json);
    }
}

#[test]
fn the_summary_line_is_on_stdout_once_and_on_stderr_when_piped() {
    let env = Env::new(&estate::ConfigOptions::default());
    let out = env.run(&["-o", "table", "diff"]);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(stdout.matches(" to reactivate; ").count(), 1, "{stdout}");
    // stdout is a pipe here, so the person watching stderr sees the summary there too.
    assert_eq!(stderr.matches(" to reactivate; ").count(), 1, "{stderr}");
}
