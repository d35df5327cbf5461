//! The fuzz targets (`csp_sync::fuzz`) as an ordinary test: every file of `fuzz/corpus/<target>/` and a
//! fixed number of deterministic mutations of each (bit flips, inserted JSON/TOML punctuation, deleted and
//! duplicated ranges, splices with the other files, truncations). A panic fails the test and prints the
//! input to add to the corpus. Longer, coverage-guided runs: `cargo +nightly fuzz run <target>` in `fuzz/`.

use std::path::Path;

/// Mutations per corpus file (seconds in all, in a debug build).
const MUTATIONS: usize = 600;

/// A small deterministic generator (xorshift64*), so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b"\\",
    b"\n",
    b",",
    b":",
    b"=",
    b"0",
    b"-1",
    b"1e30",
    b"18446744073709551615",
    b"null",
    b"true",
    b"[[tenant]]\n",
    b"\xef\xbb\xbf",
    b"\xff",
    b"'''",
    b"\"\"\"",
    b"sig=",
    b"Bearer ",
    b"://a:b@",
    b"\\u0000",
    b"9999999999999999999999",
];

fn mutate(rng: &mut Rng, input: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let len = out.len();
        match rng.below(6) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(len + 1);
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                out.splice(i..i, piece.iter().copied());
            }
            2 if len > 0 => {
                let a = rng.below(len);
                let b = (a + rng.below(64)).min(len);
                out.drain(a..b);
            }
            3 if len > 0 => {
                let a = rng.below(len);
                let b = (a + rng.below(64)).min(len);
                let piece: Vec<u8> = out[a..b].to_vec();
                let at = rng.below(len + 1);
                out.splice(at..at, piece);
            }
            4 if !others.is_empty() => {
                let other = &others[rng.below(others.len())];
                let from = rng.below(other.len() + 1);
                let at = rng.below(len + 1);
                out.truncate(at);
                out.extend_from_slice(&other[from..]);
            }
            _ => out.truncate(rng.below(len + 1)),
        }
    }
    out
}

#[test]
fn every_fuzz_target_survives_its_corpus_and_mutations() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (name, target) in csp_sync::fuzz::TARGETS {
        let dir = root.join(name);
        let mut files: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
        assert!(!files.is_empty(), "{name}: empty corpus");
        files.sort();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
        for input in &files {
            target(input);
            for _ in 0..MUTATIONS {
                let m = mutate(&mut rng, input, &files);
                let result = std::panic::catch_unwind(|| target(&m));
                assert!(
                    result.is_ok(),
                    "fuzz target {name} panicked on {:?}",
                    String::from_utf8_lossy(&m)
                );
            }
        }
    }
}
