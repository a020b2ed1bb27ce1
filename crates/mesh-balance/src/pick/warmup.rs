//! Dubbo's warm-up: a provider registered less than its warm-up period ago gets a share of its weight in
//! proportion to its uptime (the weighted balancers read the adjusted weights from the candidate set).

/// Effective weight with Dubbo's warm-up: `weight * uptime / warmup`, at least 1, until warm. `warm` is
/// (registered at, warm-up period), in ms; returns (weight, still warming up).
pub(super) fn warm_weight(weight: u32, warm: Option<(u64, u64)>, now_ms: u64) -> (u32, bool) {
    match warm {
        Some((at, warmup)) if warmup > 0 && weight > 0 => {
            let up = now_ms.saturating_sub(at);
            if up >= warmup {
                (weight, false)
            } else {
                let w = (u128::from(up) * u128::from(weight) / u128::from(warmup)) as u32;
                (w.clamp(1, weight.max(1)), true)
            }
        }
        _ => (weight, false),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::build;
    use super::super::{LiveState, Pick, PickOptions, Policy, XorShift64};
    use super::*;
    use crate::table::{Provider, Request, RouteTable};

    #[test]
    fn warm_up_scales_weights_and_refreshes() {
        let ps = vec![
            Provider::new("10.0.0.1:1".parse().unwrap()),
            Provider::new("10.0.0.2:1".parse().unwrap())
                .with_registered_at_ms(0)
                .with_param("warmup", "100000"),
        ];
        let mut t = build(1, ps);
        let live = LiveState::new(&t);
        let r = t.route(&Request::new("m"));
        let mut rng = XorShift64::new(5);
        let share = |t: &mut RouteTable, rng: &mut XorShift64, now_ms: u64| {
            let o = PickOptions {
                policy: Policy::WeightedRandom,
                now_ns: now_ms * 1_000_000,
                ..Default::default()
            };
            let n = 20_000;
            let c = (0..n)
                .filter(|_| t.pick(r, &live, rng, &o) == Pick::Provider(1))
                .count();
            c as f64 / n as f64
        };
        // 25 s of 100 s: weight 25 vs 100 -> 20 %
        let s = share(&mut t, &mut rng, 25_000);
        assert!((s - 0.2).abs() < 0.02, "{s}");
        // within the refresh interval the weights stay
        let s = share(&mut t, &mut rng, 25_500);
        assert!((s - 0.2).abs() < 0.02, "{s}");
        let s = share(&mut t, &mut rng, 200_000);
        assert!((s - 0.5).abs() < 0.02, "{s}");
        assert_eq!(
            t.sets[r.0 as usize].next_refresh_ms,
            u64::MAX,
            "warm: no more refreshes"
        );
        assert_eq!(warm_weight(100, Some((1000, 10_000)), 1000), (1, true));
        assert_eq!(warm_weight(100, Some((1000, 10_000)), 6000), (50, true));
    }
}
