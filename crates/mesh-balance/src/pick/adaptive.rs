//! [`Policy::Adaptive`](super::Policy::Adaptive): power of two choices over a cost of peak-EWMA latency x
//! (in flight + 1), weighted by how far the latency is inflated above the provider's own floor.

use super::live::LiveState;
use super::{below, usable, CandidateSet, PickOptions, Rng, DRAWS};

/// Cost given to a provider with calls in flight and no answer yet (Finagle's penalty).
const PENALTY_NS: f64 = 1e12;

/// P2C cost: decayed peak EWMA x (in flight + 1); the penalty for a provider with calls in flight and
/// no answer yet. The idle decay is applied only after a sixteenth of the decay time (to spare an
/// `exp` on most reads).
#[inline]
fn cost(live: &LiveState, idx: usize, now_ns: u64) -> f64 {
    let s = &live.slots[idx];
    let pending = f64::from(s.inflight);
    if s.ewma_ns == 0.0 {
        return if s.inflight == 0 {
            0.0
        } else {
            PENALTY_NS + pending
        };
    }
    let decay_ns = live.opts.decay_ns;
    let dt_ns = u64::from(((now_ns / 1_000_000) as u32).wrapping_sub(s.last_ms)) * 1_000_000;
    let e = if dt_ns > decay_ns / 16 {
        f64::from(s.ewma_ns) * (-(dt_ns as f64) / decay_ns as f64).exp()
    } else {
        f64::from(s.ewma_ns)
    };
    // Queueing inflates latency above the provider's own floor; past a capacity knee more calls only
    // make every call slower. Weighing the inflation by its cube moves load away from a provider as
    // soon as its calls start to queue, while providers that are simply slower (a higher floor) are
    // compared by latency x load as in plain P2C.
    let floor = f64::from(s.floor_ns);
    let q = if floor > 0.0 { (e / floor).max(1.0) } else { 1.0 };
    e * (pending + 1.0) * q * q * q
}

/// The cheaper of two providers (`a` on a tie).
#[inline]
fn cheaper(live: &LiveState, a: usize, b: usize, now_ns: u64) -> usize {
    if cost(live, b, now_ns) < cost(live, a, now_ns) {
        b
    } else {
        a
    }
}

/// Power of two choices: two distinct random members, the lower cost wins; unavailable ones are skipped.
pub(super) fn pick<R: Rng + ?Sized>(
    set: &CandidateSet,
    live: &LiveState,
    rng: &mut R,
    opts: &PickOptions<'_>,
) -> Option<usize> {
    let n = set.members.len() as u64;
    let ex = opts.exclude;
    if n == 1 {
        let i = set.members[0] as usize;
        return usable(live, ex, i).then_some(i);
    }
    // Weight 0 (a provider being drained) takes no share while any member weighs more.
    let ok = |pos: u64, i: usize| set.has_share(pos as usize) && usable(live, ex, i);
    for _ in 0..DRAWS {
        let a = below(rng, n);
        let mut b = below(rng, n - 1);
        if b >= a {
            b += 1;
        }
        let (pa, pb) = (a, b);
        let (a, b) = (set.members[a as usize] as usize, set.members[b as usize] as usize);
        match (ok(pa, a), ok(pb, b)) {
            (true, true) => return Some(cheaper(live, a, b, opts.now_ns)),
            (true, false) => return Some(a),
            (false, true) => return Some(b),
            (false, false) => {}
        }
    }
    None
}

/// The exact fallback over `members` (member position, provider index; all available ones):
/// reservoir-samples two, keeps the cheaper.
pub(super) fn cheaper_of_two<R: Rng + ?Sized>(
    live: &LiveState,
    rng: &mut R,
    members: impl Iterator<Item = (usize, usize)>,
    now_ns: u64,
) -> Option<usize> {
    let mut seen = 0u64;
    let mut two: [Option<usize>; 2] = [None, None];
    for (_, i) in members {
        seen += 1;
        if seen <= 2 {
            two[seen as usize - 1] = Some(i);
        } else {
            let r = below(rng, seen);
            if r < 2 {
                two[r as usize] = Some(i);
            }
        }
    }
    match two {
        [Some(a), Some(b)] => Some(cheaper(live, a, b, now_ns)),
        [a, _] => a,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{counts, sixty_ms_at_100_and_fifty_at_150, table_and_live};
    use super::super::Policy;

    #[test]
    fn adaptive_prefers_fast_and_idle() {
        let (mut t, mut live) = table_and_live(&[1, 1], &[None, None]);
        let now = 1_000_000_000;
        live.on_send(0, now);
        live.on_answer(0, now, 50_000_000, true);
        live.on_send(1, now);
        live.on_answer(1, now, 5_000_000, true);
        assert_eq!(counts(&mut t, &live, Policy::Adaptive, 100), [0, 100]);
        // 10 calls in flight to the fast one make it cost more than the idle slow one
        for _ in 0..10 {
            live.on_send(1, now);
        }
        assert_eq!(counts(&mut t, &live, Policy::Adaptive, 100), [100, 0]);
        // a provider with calls in flight and no answer yet is avoided
        let (mut t, mut live) = table_and_live(&[1, 1], &[None, None]);
        live.on_send(0, now);
        assert_eq!(counts(&mut t, &live, Policy::Adaptive, 50), [0, 50]);
    }

    #[test]
    fn adaptive_moves_away_from_a_provider_whose_calls_queue() {
        // Both answer in 50 ms when not loaded. Provider 0 is past its capacity knee: its latest answers
        // took 60 ms, with 100 calls on it; provider 1 still answers in 50 ms with 150 on it. Plain
        // latency x load would prefer 0 (60 x 101 < 50 x 151); 0's queueing (60 / 50 = 1.2, cubed 1.73)
        // makes it cost more.
        let (mut t, mut live) = table_and_live(&[1, 1], &[None, None]);
        sixty_ms_at_100_and_fifty_at_150(&mut live, 10);
        assert_eq!(counts(&mut t, &live, Policy::Adaptive, 100), [0, 100]);
        // A provider that is slow by nature (floor 60 ms) is not punished for it: 60 x 101 < 50 x 151.
        let (mut t, mut live) = table_and_live(&[1, 1], &[None, None]);
        sixty_ms_at_100_and_fifty_at_150(&mut live, 0);
        assert_eq!(counts(&mut t, &live, Policy::Adaptive, 100), [100, 0]);
    }
}
