//! A small kselftest-style TAP harness: `TAP version 13`, a plan, `ok N
//! name`, `not ok N name`, `# SKIP reason`, diagnostics behind `# `, a totals
//! line, and the kselftest exit codes (0 pass, 1 fail, 4 skip).

use std::time::Instant;

/// What a test concluded.
pub enum Outcome {
    /// It passed.
    Pass,
    /// It could not run here, and says why.
    Skip(String),
}

/// The result of one test: `Err` is a failure with its reason.
pub type TestResult = Result<Outcome, String>;

/// A named test.
pub struct Test {
    /// `group/name`, printed in the TAP line.
    pub name: String,
    /// The test.
    pub run: Box<dyn Fn() -> TestResult>,
}

impl Test {
    /// A test named `name` running `run`.
    pub fn new(name: impl Into<String>, run: impl Fn() -> TestResult + 'static) -> Self {
        Self {
            name: name.into(),
            run: Box::new(run),
        }
    }
}

/// Exit code of a run that passed.
pub const KSFT_PASS: i32 = 0;
/// Exit code of a run with a failure.
pub const KSFT_FAIL: i32 = 1;
/// Exit code of a run where everything was skipped.
pub const KSFT_SKIP: i32 = 4;

/// Runs `tests` whose names contain one of `filters` (all if empty), prints
/// TAP, and returns the kselftest exit code.
pub fn run(tests: &[Test], filters: &[String]) -> i32 {
    let chosen: Vec<&Test> = tests
        .iter()
        .filter(|t| filters.is_empty() || filters.iter().any(|f| t.name.contains(f.as_str())))
        .collect();
    println!("TAP version 13");
    println!("1..{}", chosen.len());
    let (mut pass, mut fail, mut skip) = (0, 0, 0);
    for (i, test) in chosen.iter().enumerate() {
        let n = i + 1;
        let start = Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(&test.run))
            .unwrap_or_else(|_| Err("the test panicked".to_string()));
        let ms = start.elapsed().as_millis();
        match result {
            Ok(Outcome::Pass) => {
                pass += 1;
                println!("ok {n} {} # {ms} ms", test.name);
            }
            Ok(Outcome::Skip(why)) => {
                skip += 1;
                println!("ok {n} {} # SKIP {why}", test.name);
            }
            Err(why) => {
                fail += 1;
                for line in why.lines() {
                    println!("# {line}");
                }
                println!("not ok {n} {}", test.name);
            }
        }
    }
    println!("# Totals: pass:{pass} fail:{fail} xfail:0 xpass:0 skip:{skip} error:0");
    if fail > 0 {
        KSFT_FAIL
    } else if pass == 0 && skip > 0 {
        KSFT_SKIP
    } else {
        KSFT_PASS
    }
}

/// Fails the test with a message unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!("{}:{}: {}", file!(), line!(), format!($($fmt)+)));
        }
    };
}

/// Fails the test unless the two values are equal.
#[macro_export]
macro_rules! ensure_eq {
    ($left:expr, $right:expr $(,)?) => {{
        let (l, r) = (&$left, &$right);
        if l != r {
            return Err(format!(
                "{}:{}: {} == {} failed: {:?} != {:?}",
                file!(), line!(), stringify!($left), stringify!($right), l, r
            ));
        }
    }};
    ($left:expr, $right:expr, $($fmt:tt)+) => {{
        let (l, r) = (&$left, &$right);
        if l != r {
            return Err(format!(
                "{}:{}: {:?} != {:?}: {}", file!(), line!(), l, r, format!($($fmt)+)
            ));
        }
    }};
}

/// Turns any displayable error into a test failure with context.
pub trait Context<T> {
    /// Adds `what` to the error.
    fn ctx(self, what: &str) -> Result<T, String>;
}

impl<T, E: std::fmt::Display> Context<T> for Result<T, E> {
    fn ctx(self, what: &str) -> Result<T, String> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}
