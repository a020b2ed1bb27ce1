use super::*;
use crate::runtime::run_on_test_shard;

#[test]
fn a_sleep_ends_at_its_deadline_not_before() {
    run_on_test_shard(async {
        let t0 = Instant::now();
        sleep(Duration::from_millis(30)).await;
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(30), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    });
}

#[test]
fn an_earlier_deadline_armed_after_a_later_one_fires_first() {
    run_on_test_shard(async {
        let order = Rc::new(RefCell::new(Vec::new()));
        let t0 = Instant::now();
        let late = {
            let order = order.clone();
            glommio::spawn_local(async move {
                sleep_until(t0 + Duration::from_millis(300)).await;
                order.borrow_mut().push("late");
            })
        };
        // Let the late one register (and arm the alarm) first.
        glommio::executor().yield_now().await;
        sleep_until(t0 + Duration::from_millis(20)).await;
        order.borrow_mut().push("early");
        let early_at = t0.elapsed();
        late.await;
        assert_eq!(*order.borrow(), vec!["early", "late"]);
        assert!(early_at < Duration::from_millis(250), "{early_at:?}");
        assert!(t0.elapsed() >= Duration::from_millis(300));
    });
}

#[test]
fn a_dropped_sleep_never_wakes_and_the_alarm_moves_to_the_next_deadline() {
    run_on_test_shard(async {
        let flag = std::sync::Arc::new(FlagWaker(std::sync::atomic::AtomicBool::new(false)));
        {
            // Registered (polled once) then dropped: its deadline still rings the alarm, for nothing.
            let mut s = Box::pin(sleep(Duration::from_millis(10)));
            let waker = std::task::Waker::from(flag.clone());
            let mut cx = Context::from_waker(&waker);
            assert!(s.as_mut().poll(&mut cx).is_pending());
        }
        let t0 = Instant::now();
        sleep(Duration::from_millis(40)).await;
        assert!(t0.elapsed() >= Duration::from_millis(40));
        assert!(!flag.0.load(std::sync::atomic::Ordering::Relaxed));
        let pending = TIMERS.with(|t| t.borrow().as_ref().map(|t| t.queue.borrow().len()));
        assert_eq!(pending, Some(0));
    });
}

#[test]
fn many_sleeps_on_one_shard_all_end_in_deadline_order() {
    run_on_test_shard(async {
        let t0 = Instant::now();
        let order = Rc::new(RefCell::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in (0..20u64).rev() {
            let order = order.clone();
            tasks.push(glommio::spawn_local(async move {
                sleep_until(t0 + Duration::from_millis(5 * i + 5)).await;
                order.borrow_mut().push(i);
            }));
        }
        for t in tasks {
            t.await;
        }
        assert_eq!(*order.borrow(), (0..20).collect::<Vec<_>>());
    });
}

#[test]
fn each_executor_on_a_thread_gets_its_own_alarm() {
    for _ in 0..2 {
        run_on_test_shard(async {
            let t0 = Instant::now();
            sleep(Duration::from_millis(5)).await;
            assert!(t0.elapsed() >= Duration::from_millis(5));
        });
    }
}

struct FlagWaker(std::sync::atomic::AtomicBool);
impl std::task::Wake for FlagWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
