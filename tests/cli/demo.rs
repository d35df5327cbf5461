//! The demo (`examples/demo.rs`) stays short and narrow: its script (`demo_script.rs`) run step by step
//! against the same estate, its whole output under 120 lines, none wider than 120 columns.

use crate::demo_script;
use crate::support::{Env, text};

#[test]
fn the_demo_is_short_and_narrow() {
    let env = Env::new(&demo_script::options());
    let secrets = tempfile::tempdir().unwrap();
    let (set, unset) = demo_script::secret_vars(crate::estate::secret_env(&env.em), secrets.path());
    let mut lines =
        vec!["Emulator: Partner Center http://127.0.0.1:65535, Graph ..., Halo ...".to_string()];
    let mut codes = Vec::new();
    for args in demo_script::STEPS {
        let mut full = vec!["-o", "json"];
        full.extend_from_slice(args);
        let mut cmd = env.command(&full);
        for k in &unset {
            cmd.env_remove(k);
        }
        cmd.envs(set.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null());
        let out = cmd.output().unwrap();
        env.assert_no_leak(&full, &out);
        let code = out.status.code().unwrap_or(1);
        codes.push(code);
        lines.extend(demo_script::step_lines(
            args,
            &text(&out.stdout),
            &text(&out.stderr),
            code,
        ));
    }
    let config = env.dir.path().join("csp-sync.toml");
    lines.extend(demo_script::closing_lines(&config));
    let all = lines.join("\n");
    assert!(
        lines.len() < demo_script::MAX_LINES,
        "{} lines:\n{all}",
        lines.len()
    );
    for l in &lines {
        assert!(
            l.chars().count() <= demo_script::WIDTH,
            "wider than 120: {l}"
        );
    }
    // The story the closing words tell: Woodgrove's error first (exit 1), then consent, then in step.
    assert_eq!(codes, [0, 0, 1, 1, 0, 0, 0], "{all}");
    assert!(all.contains("Contoso Ltd: nothing to change"), "{all}");
    assert!(all.contains(&config.display().to_string()), "{all}");
    assert!(all.contains("csp-sync doctor"), "{all}");
}
