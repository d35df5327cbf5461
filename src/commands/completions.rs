//! `csp-sync completions <shell>`: a shell completion script on stdout.

use std::io::Write;

use crate::cli::Shell;

/// Writes the completion script for `shell` to `out`.
pub fn run_completions(shell: Shell, out: &mut dyn Write) -> anyhow::Result<()> {
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
        Shell::PowerShell => clap_complete::Shell::PowerShell,
    };
    let mut cmd = crate::cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(generator, &mut cmd, "csp-sync", &mut buf);
    out.write_all(&buf)?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_gets_a_script_naming_the_commands() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish, Shell::PowerShell] {
            let mut out = Vec::new();
            run_completions(shell, &mut out).unwrap();
            let script = String::from_utf8(out).unwrap();
            assert!(script.contains("csp-sync"), "{shell:?}");
            assert!(script.contains("tenants"), "{shell:?}");
            assert!(script.contains("detailed-exitcode"), "{shell:?}");
        }
    }
}
