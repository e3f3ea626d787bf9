//! OpenBLAS for flex's linear products, loaded at run time: `cblas_sgemm` of the system's
//! OpenBLAS when one is found, the gemm crate otherwise, so the build stays free of C
//! libraries. `MPT_BLAS` picks: unset or `auto` (the usual library names; none found, gemm),
//! `off` (gemm), or the path of an OpenBLAS shared library (which must load).
//!
//! `auto` also passes over an OpenBLAS whose DYNAMIC_ARCH picked a generic fallback core
//! (`Prescott`, `Core2`, `Katmai`, ...: what 0.3.21 picks on CPUs it does not know) on a CPU
//! with AVX2: its SSE kernels made a MiniLM step 2.3x slower than gemm's AVX-512 ones on an
//! Intel Xeon (issue 16). A path in `MPT_BLAS` is used whatever its core.
//!
//! OpenBLAS is told to use one thread: the linear maps split their rows across rayon's threads
//! and call it from each. Refused: 64-bit-integer builds (`USE64BITINT` in `openblas_get_config`;
//! the CBLAS integers here are 32-bit) and versions before 0.3.7, whose concurrent calls were
//! not thread-safe.

use std::ffi::{CStr, c_char};
use std::sync::OnceLock;

use crate::ModelError;

/// `cblas_sgemm(layout, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)`.
type Sgemm =
    unsafe extern "C" fn(i32, i32, i32, i32, i32, i32, f32, *const f32, i32, *const f32, i32, f32, *mut f32, i32);

const ROW_MAJOR: i32 = 101;
const NO_TRANS: i32 = 111;
const TRANS: i32 = 112;

/// Names tried by `MPT_BLAS=auto`: Debian/Ubuntu and Fedora (`.so.0`), a bare development
/// link, Homebrew.
const AUTO_NAMES: &[&str] = &["libopenblas.so.0", "libopenblas.so", "libopenblas.0.dylib", "libopenblas.dylib"];

/// A loaded OpenBLAS.
pub struct OpenBlas {
    sgemm: Sgemm,
    /// `openblas_get_config()`, e.g. `OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64`.
    config: String,
    /// `openblas_get_corename()`, the kernel core DYNAMIC_ARCH chose (e.g. `Haswell`); empty
    /// when the library does not say.
    core: String,
    /// The name or path it was loaded from.
    source: String,
    _lib: libloading::Library,
}

impl OpenBlas {
    /// `dst[m, n] (+)= lhs[m, k] · rhs[k, n]` like [`super::matmul`] (operands as (pointer,
    /// column stride, row stride)), when CBLAS can express it: `dst` row-major, `lhs` and
    /// `rhs` each with one unit stride, every size within `i32`. Returns whether it ran.
    ///
    /// # Safety
    /// As [`super::matmul`].
    pub unsafe fn matmul(
        &self,
        (m, n, k): (usize, usize, usize),
        dst: (*mut f32, isize, isize),
        accumulate: bool,
        lhs: (*const f32, isize, isize),
        rhs: (*const f32, isize, isize),
    ) -> bool {
        let int = |x: usize| i32::try_from(x).ok();
        // (transpose flag, leading dimension) of a `[rows, cols]` operand.
        let layout = |(_, cs, rs): (*const f32, isize, isize), rows: usize, cols: usize| {
            if cs == 1 && rs >= cols.max(1) as isize {
                Some((NO_TRANS, int(rs as usize)?))
            } else if rs == 1 && cs >= rows.max(1) as isize {
                Some((TRANS, int(cs as usize)?))
            } else {
                None
            }
        };
        let (Some(mi), Some(ni), Some(ki)) = (int(m), int(n), int(k)) else {
            return false;
        };
        let (Some((ta, lda)), Some((tb, ldb))) = (layout(lhs, m, k), layout(rhs, k, n)) else {
            return false;
        };
        if dst.1 != 1 || dst.2 < n.max(1) as isize {
            return false;
        }
        let Some(ldc) = int(dst.2 as usize) else {
            return false;
        };
        let beta = if accumulate { 1.0 } else { 0.0 };
        // SAFETY: the caller's operands have the stated shapes and strides, which the
        // transpose flags and leading dimensions above describe to CBLAS.
        unsafe { (self.sgemm)(ROW_MAJOR, ta, tb, mi, ni, ki, 1.0, lhs.0, lda, rhs.0, ldb, beta, dst.0, ldc) };
        true
    }

    /// `<openblas_get_config()> from <library>`, for logs and benchmark records.
    pub fn describe(&self) -> String {
        format!("{} from {}", self.config, self.source)
    }
}

/// OpenBLAS cores that are generic fallbacks for x86 CPUs newer than they are: SSE-era
/// kernels without AVX (compared case-insensitively).
const GENERIC_CORES: &[&str] = &[
    "prescott",
    "core2",
    "katmai",
    "coppermine",
    "northwood",
    "banias",
    "penryn",
    "dunnington",
    "nehalem",
    "atom",
    "athlon",
    "opteron",
    "opteron_sse3",
    "barcelona",
    "bobcat",
    "nano",
    "generic",
];

/// Whether OpenBLAS's kernel `core` is a generic SSE fallback on a CPU that has AVX2
/// (`cpu_avx2`), where gemm's AVX2/AVX-512 kernels are faster.
pub fn generic_core(core: &str, cpu_avx2: bool) -> bool {
    cpu_avx2 && GENERIC_CORES.iter().any(|g| g.eq_ignore_ascii_case(core.trim()))
}

/// Whether this CPU has AVX2 and FMA (where gemm has its vector kernels).
fn cpu_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The widest vector kernels gemm runs here: `AVX-512`, `AVX2+FMA` or `baseline`.
pub fn gemm_isa() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            return "AVX-512";
        }
        if cpu_avx2() {
            return "AVX2+FMA";
        }
    }
    "baseline"
}

/// Why `MPT_BLAS=auto` passed over an OpenBLAS it found, if it did.
static PASSED_OVER: OnceLock<String> = OnceLock::new();

/// The OpenBLAS `MPT_BLAS` selects, loaded on first use; `None`: gemm (also when `MPT_BLAS`
/// names an unusable library, which [`linear_kernel`] reports).
pub fn openblas() -> Option<&'static OpenBlas> {
    selected().as_ref().ok().and_then(Option::as_ref)
}

/// What flex's linear products run on: `Ok(description)`, or the error of an `MPT_BLAS` that
/// names a library that cannot be used.
pub fn linear_kernel() -> Result<String, ModelError> {
    match selected() {
        Ok(Some(blas)) => Ok(blas.describe()),
        Ok(None) => Ok(match PASSED_OVER.get() {
            Some(why) => format!("gemm crate ({}; {why})", gemm_isa()),
            None => format!("gemm crate ({})", gemm_isa()),
        }),
        Err((setting, reason)) => Err(ModelError::Blas { setting: setting.clone(), reason: reason.clone() }),
    }
}

fn selected() -> &'static Result<Option<OpenBlas>, (String, String)> {
    static SELECTED: OnceLock<Result<Option<OpenBlas>, (String, String)>> = OnceLock::new();
    SELECTED.get_or_init(|| {
        let setting = std::env::var("MPT_BLAS").unwrap_or_default();
        let selected = load(&setting).map_err(|reason| (setting, reason));
        if let Ok(Some(blas)) = &selected {
            tracing::debug!("loaded {}", blas.describe());
        }
        selected
    })
}

/// Loads what `setting` (`MPT_BLAS`'s value) names: `""`/`auto`: the first usable library of
/// [`AUTO_NAMES`] or none; `off`: none; anything else: that library, or why it cannot be used.
pub fn load(setting: &str) -> Result<Option<OpenBlas>, String> {
    match setting {
        "off" => Ok(None),
        "" | "auto" => Ok(AUTO_NAMES.iter().find_map(|name| match open(name) {
            Ok(blas) if generic_core(&blas.core, cpu_avx2()) => {
                let why = format!(
                    "passed over {} ({}): its kernel core {} is a generic SSE fallback on this {} CPU",
                    name,
                    blas.config.split_whitespace().take(2).collect::<Vec<_>>().join(" "),
                    blas.core,
                    gemm_isa()
                );
                tracing::info!("MPT_BLAS=auto: {why}; set MPT_BLAS={name} to use it anyway");
                let _ = PASSED_OVER.set(why);
                None
            }
            Ok(blas) => Some(blas),
            Err(reason) => {
                tracing::debug!("MPT_BLAS=auto: {reason}");
                None
            }
        })),
        path => open(path).map(Some),
    }
}

fn open(name: &str) -> Result<OpenBlas, String> {
    // SAFETY: loading runs the library's initialisers (OpenBLAS's start its thread pool, which
    // stays idle at one thread).
    let lib = unsafe { libloading::Library::new(name) }.map_err(|e| e.to_string())?;
    let symbol_error =
        |symbol: &str, e: libloading::Error| format!("{name} is not an OpenBLAS library (no `{symbol}`: {e})");
    // SAFETY: the symbols are looked up with OpenBLAS's C signatures.
    let (config, core, set_threads, sgemm) = unsafe {
        let config = lib
            .get::<unsafe extern "C" fn() -> *const c_char>(b"openblas_get_config\0")
            .map_err(|e| symbol_error("openblas_get_config", e))?;
        let set_threads = lib
            .get::<unsafe extern "C" fn(i32)>(b"openblas_set_num_threads\0")
            .map_err(|e| symbol_error("openblas_set_num_threads", e))?;
        let sgemm = lib.get::<Sgemm>(b"cblas_sgemm\0").map_err(|e| symbol_error("cblas_sgemm", e))?;
        let read = |text: *const c_char| {
            if text.is_null() { String::new() } else { CStr::from_ptr(text).to_string_lossy().into_owned() }
        };
        let core = lib
            .get::<unsafe extern "C" fn() -> *const c_char>(b"openblas_get_corename\0")
            .map(|f| read(f()))
            .unwrap_or_default();
        (read(config()), core, *set_threads, *sgemm)
    };
    check_config(&config).map_err(|reason| format!("{name}: {reason}"))?;
    // SAFETY: a plain setter; before any product runs.
    unsafe { set_threads(1) };
    Ok(OpenBlas { sgemm, config, core, source: name.to_string(), _lib: lib })
}

/// Accepts an `openblas_get_config()` string of a 32-bit-integer build at version 0.3.7 or later.
pub fn check_config(config: &str) -> Result<(), String> {
    let mut words = config.split_whitespace();
    let version = match (words.next(), words.next()) {
        (Some("OpenBLAS"), Some(version)) => version,
        _ => return Err(format!("unrecognised build string {config:?}; expected \"OpenBLAS <version> ...\"")),
    };
    let numbers: Vec<u32> =
        version.split(|c: char| !c.is_ascii_digit()).take(3).map(|part| part.parse().unwrap_or(0)).collect();
    if numbers.len() < 3 || (numbers[0], numbers[1], numbers[2]) < (0, 3, 7) {
        return Err(format!("OpenBLAS {version} is too old; 0.3.7 or later is needed (calls from several threads)"));
    }
    if words.any(|w| w == "USE64BITINT") {
        return Err("a 64-bit-integer (USE64BITINT) build; a 32-bit-integer OpenBLAS is needed".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_strings() {
        assert_eq!(check_config("OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64"), Ok(()));
        assert_eq!(check_config("OpenBLAS 0.3.7.dev DYNAMIC_ARCH"), Ok(()));
        assert_eq!(check_config("OpenBLAS 0.4.0"), Ok(()));
        let err = check_config("OpenBLAS 0.3.31.188.0  USE64BITINT DYNAMIC_ARCH NO_AFFINITY").unwrap_err();
        assert!(err.contains("USE64BITINT"), "{err}");
        let err = check_config("OpenBLAS 0.3.6 DYNAMIC_ARCH").unwrap_err();
        assert!(err.contains("too old"), "{err}");
        let err = check_config("BLIS 0.9.0").unwrap_err();
        assert!(err.contains("unrecognised"), "{err}");
        assert!(check_config("").is_err());
    }

    #[test]
    fn generic_cores_are_passed_over_only_on_avx2_cpus() {
        for core in ["Prescott", "CORE2", "Katmai", "Nehalem", "Barcelona"] {
            assert!(generic_core(core, true), "{core}");
            assert!(!generic_core(core, false), "{core} on a CPU without AVX2 is what it has");
        }
        for core in ["Haswell", "SkylakeX", "Cooperlake", "Zen", "SapphireRapids", ""] {
            assert!(!generic_core(core, true), "{core}");
        }
    }

    /// OpenBLAS honours `OPENBLAS_CORETYPE`: forced to Prescott (what 0.3.21 picked on an
    /// AVX-512 Xeon), `auto` must leave it for gemm on an AVX2 CPU. In a child process, since
    /// the library reads the variable when it loads.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn a_generic_openblas_core_is_not_chosen_over_gemm() {
        if std::env::var_os("MPT_BLAS_CHILD").is_some() {
            let kernel = linear_kernel().unwrap();
            println!("KERNEL {kernel}");
            return;
        }
        if system_openblas().is_none() || !cpu_avx2() {
            eprintln!("skipped: needs OpenBLAS and an AVX2 CPU");
            return;
        }
        let exe = std::env::current_exe().unwrap();
        let run = |coretype: &str| {
            let out = std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "fused::cpu::blas::tests::a_generic_openblas_core_is_not_chosen_over_gemm",
                    "--nocapture",
                ])
                .env("MPT_BLAS_CHILD", "1")
                .env("MPT_BLAS", "auto")
                .env("OPENBLAS_CORETYPE", coretype)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.lines().find_map(|l| l.strip_prefix("KERNEL ").map(str::to_string)).unwrap_or(text)
        };
        let prescott = run("Prescott");
        assert!(
            prescott.starts_with("gemm crate") && prescott.contains("Prescott is a generic SSE fallback"),
            "{prescott}"
        );
        let haswell = run("Haswell");
        assert!(haswell.starts_with("OpenBLAS"), "{haswell}");
    }

    #[test]
    fn settings() {
        assert!(matches!(load("off"), Ok(None)));
        let err = load("/nonexistent/libopenblas.so.0").err().expect("a missing file is an error");
        assert!(err.contains("/nonexistent/libopenblas.so.0"), "{err}");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_library_that_is_not_openblas_is_refused() {
        let err = load("libm.so.6").err().expect("libm is not OpenBLAS");
        assert!(err.contains("libm.so.6 is not an OpenBLAS library") && err.contains("openblas_get_config"), "{err}");
    }

    /// The first OpenBLAS of the `auto` names that loads (whatever its core); without one the
    /// test is skipped, unless `MPT_REQUIRE_OPENBLAS=1` (CI, which installs it), where that is
    /// a failure.
    fn system_openblas() -> Option<OpenBlas> {
        let found = AUTO_NAMES.iter().find_map(|name| open(name).ok());
        if found.is_none() {
            assert!(
                std::env::var("MPT_REQUIRE_OPENBLAS").map_or(true, |v| v != "1"),
                "MPT_REQUIRE_OPENBLAS=1 but none of {AUTO_NAMES:?} loads"
            );
            eprintln!("no OpenBLAS ({AUTO_NAMES:?}); skipped");
        }
        found
    }

    /// Deterministic values in [-1, 1).
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (0..len)
            .map(|_| {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// One product `[m, k] · [k, n]` (each operand stored transposed or not, the output with a
    /// row stride `ldc >= n`) on OpenBLAS and on gemm; returns the largest difference.
    fn compare(
        blas: &OpenBlas,
        (m, n, k): (usize, usize, usize),
        ta: bool,
        tb: bool,
        accumulate: bool,
        seed: u64,
    ) -> f32 {
        let (lhs, rhs) = (values(m * k, seed), values(k * n, seed + 1));
        let ldc = n + 3;
        let start = values(m * ldc, seed + 2);
        let lhs_s = if ta { (m as isize, 1) } else { (1, k as isize) };
        let rhs_s = if tb { (k as isize, 1) } else { (1, n as isize) };
        let (mut want, mut got) = (start.clone(), start);
        // SAFETY: buffers of the stated shapes and strides.
        unsafe {
            super::super::matmul(
                (m, n, k),
                (want.as_mut_ptr(), 1, ldc as isize),
                accumulate,
                (lhs.as_ptr(), lhs_s.0, lhs_s.1),
                (rhs.as_ptr(), rhs_s.0, rhs_s.1),
            );
            assert!(blas.matmul(
                (m, n, k),
                (got.as_mut_ptr(), 1, ldc as isize),
                accumulate,
                (lhs.as_ptr(), lhs_s.0, lhs_s.1),
                (rhs.as_ptr(), rhs_s.0, rhs_s.1)
            ));
        }
        // Padding columns past `n` are not touched.
        for row in 0..m {
            assert_eq!(
                want[row * ldc + n..(row + 1) * ldc],
                got[row * ldc + n..(row + 1) * ldc],
                "padding of row {row}"
            );
        }
        want.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn products_equal_gemms() {
        let Some(blas) = system_openblas() else { return };
        let shapes = [(228, 384, 384), (228, 1536, 384), (200, 384, 1536), (1, 1, 1), (7, 13, 5), (3, 1, 17)];
        for (i, &dims) in shapes.iter().enumerate() {
            for (ta, tb, acc) in [
                (false, false, false),
                (false, true, false),
                (true, false, true),
                (true, true, true),
                (false, false, true),
            ] {
                let diff = compare(&blas, dims, ta, tb, acc, i as u64 * 10);
                // Sums of k products of values in [-1, 1): rounding differences grow like √k.
                assert!(diff <= 1e-6 * (dims.2 as f32).sqrt() * 4.0, "{dims:?} ta {ta} tb {tb} acc {acc}: {diff}");
            }
        }
    }

    #[test]
    fn concurrent_products_equal_gemms() {
        use rayon::prelude::*;
        let Some(blas) = system_openblas() else { return };
        let worst = (0..32u64)
            .into_par_iter()
            .map(|i| compare(&blas, (64 + i as usize, 384, 384), false, i % 2 == 1, i % 3 == 0, i))
            .reduce(|| 0.0, f32::max);
        assert!(worst <= 1e-4, "{worst}");
    }

    #[test]
    fn layouts_cblas_cannot_express_are_declined() {
        let Some(blas) = system_openblas() else { return };
        let (a, b) = (values(4, 1), values(4, 2));
        let mut c = vec![0.0; 4];
        // SAFETY: 2 x 2 buffers; the column-major output is declined before anything is read.
        let ran =
            unsafe { blas.matmul((2, 2, 2), (c.as_mut_ptr(), 2, 1), false, (a.as_ptr(), 1, 2), (b.as_ptr(), 1, 2)) };
        assert!(!ran);
        assert_eq!(c, [0.0; 4]);
    }
}
