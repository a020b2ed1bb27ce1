//! The Dubbo target: pipelined hessian2 calls matched by request id, answers checked.

use super::*;

/// A call waiting for its answer.
struct Pending {
    /// Latency origin (intended time in open loop).
    from: Instant,
    /// When it was written (timeout origin).
    sent_at: Instant,
    /// `hash`: the expected `int`; `None`: an `echoUser` call (the answer must be `user_answer`).
    expected: Option<i32>,
    counted: bool,
}

/// The per-connection state that survives reconnects.
struct DubboSlot {
    c: usize,
    window: usize,
    j: u64,
    next_id: u64,
    rng: StdRng,
}

pub(super) async fn dubbo_conn(plan: Arc<Plan>, c: usize, window: usize) {
    let addr = plan.cfg.target.addr();
    let mut slot = DubboSlot {
        c,
        window,
        j: 0,
        next_id: 0,
        rng: plan.rng(c),
    };
    let mut backoff = Backoff::new();
    while !plan.over() {
        let stream = match connect(addr, plan.cfg.timeout).await {
            Ok(s) => s,
            Err(_) => {
                // The call that would have gone first fails.
                if let Some(t) = plan.next(c, slot.j).await {
                    slot.j += 1;
                    let from = t.intended.unwrap_or_else(Instant::now);
                    plan.record(c, t.counted, from, None, Err("connect".into()));
                }
                if !backoff.wait(&plan).await {
                    break;
                }
                continue;
            }
        };
        backoff.reset();
        if dubbo_session(&plan, &mut slot, stream).await {
            break;
        }
        // Broken: pause a little before re-opening (not counted as a connect failure).
        if !Backoff::new().wait(&plan).await {
            break;
        }
    }
}

/// One connection's life: `true` when the run is over, `false` when the connection broke.
async fn dubbo_session(plan: &Plan, slot: &mut DubboSlot, stream: TcpStream) -> bool {
    let c = slot.c;
    let codec = Codec::default();
    let ser = plan.cfg.serialization;
    let (mut rd, mut wr) = stream.into_split();
    let pending: Mutex<HashMap<u64, Pending>> = Mutex::new(HashMap::with_capacity(slot.window * 2));
    let permits = Semaphore::new(slot.window);
    let writer_done = AtomicBool::new(false);
    let done_notify = Notify::new();
    let timeout = plan.cfg.timeout;

    let writer = async {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut param = String::with_capacity(plan.cfg.max_len);
        let user = (plan.cfg.call == Call::User).then(bench_user);
        loop {
            let Ok(first) = permits.acquire().await else {
                return Ok(());
            };
            let Some(t) = plan.next(c, slot.j).await else {
                return Ok(());
            };
            first.forget();
            let mut ticket = Some(t);
            let mut batch = 0;
            while let Some(t) = ticket.take() {
                slot.j += 1;
                let id = slot.next_id;
                slot.next_id += 1;
                let encoded = match &user {
                    Some(u) => encode_user_request(&codec, &mut buf, id, ser, u).map(|()| None),
                    None => {
                        random_param(&mut slot.rng, plan.cfg.max_len, &mut param);
                        encode_hash_request(&codec, &mut buf, id, ser, &param)
                            .map(|()| Some(java_string_hash(&param)))
                    }
                };
                let expected = match encoded {
                    Ok(e) => e,
                    Err(e) => return Err(io::Error::other(format!("encode: {e}"))),
                };
                let now = Instant::now();
                lock(&pending).insert(
                    id,
                    Pending {
                        from: t.intended.unwrap_or(now),
                        sent_at: now,
                        expected,
                        counted: t.counted,
                    },
                );
                plan.sent(c, t.counted, t.intended, now);
                batch += 1;
                if batch >= 64 || buf.len() >= 64 * 1024 {
                    break;
                }
                // More calls that can go right now ride in the same write.
                if let Ok(p) = permits.try_acquire() {
                    match plan.ticket(c, slot.j, Instant::now()) {
                        Next::Go(t) => {
                            p.forget();
                            ticket = Some(t);
                        }
                        Next::Later(_) | Next::Stop => drop(p),
                    }
                }
            }
            wr.write_all(&buf).await?;
            buf.clear();
        }
    };

    let reader = async {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let user_expected = user_answer(&bench_user());
        // Timeouts are checked every tenth of the timeout (at most every 500 ms: with thousands of
        // connections a fine tick is a measurable share of the load generator's CPU).
        let period = (timeout / 10).clamp(Duration::from_millis(5), Duration::from_millis(500));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            if writer_done.load(Ordering::Acquire) && lock(&pending).is_empty() {
                return Ok(());
            }
            if buf.capacity() - buf.len() < 4096 {
                buf.reserve(64 * 1024);
            }
            tokio::select! {
                r = rd.read_buf(&mut buf) => {
                    if r? == 0 {
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"));
                    }
                    loop {
                        let frame = match codec.decode_frame(&mut buf) {
                            Ok(Decoded::Frame(f)) => f,
                            Ok(Decoded::NeedMore(_)) => break,
                            Err(e) => return Err(invalid(format!("bad frame: {e}"))),
                        };
                        let h = frame.header;
                        if h.is_event() || h.is_request() {
                            continue;
                        }
                        let Some(p) = lock(&pending).remove(&h.id) else {
                            // The answer to a call that already timed out.
                            continue;
                        };
                        permits.add_permits(1);
                        let outcome: Outcome = if !h.status.is_ok() {
                            Err(format!("dubbo_status_{}", h.status.0).into())
                        } else {
                            match codec.decode_body(&h, &frame.body) {
                                Ok(Body::Response(Response::Ok { result: RpcResult::Value(v), .. })) => {
                                    let right = match p.expected {
                                        Some(hash) => v.as_i64() == Some(i64::from(hash)),
                                        None => v == user_expected,
                                    };
                                    if right {
                                        Ok(())
                                    } else {
                                        Err("wrong_answer".into())
                                    }
                                }
                                Ok(Body::Response(Response::Ok { result: RpcResult::Exception(_), .. })) => {
                                    Err("dubbo_exception".into())
                                }
                                Ok(Body::Response(Response::Ok { result: RpcResult::Null, .. })) => {
                                    Err("wrong_answer".into())
                                }
                                _ => Err("bad_response".into()),
                            }
                        };
                        plan.record(c, p.counted, p.from, Some(p.sent_at), outcome);
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    let expired: Vec<Pending> = {
                        let mut map = lock(&pending);
                        let ids: Vec<u64> = map
                            .iter()
                            .filter(|(_, p)| now.duration_since(p.sent_at) >= timeout)
                            .map(|(id, _)| *id)
                            .collect();
                        ids.iter().filter_map(|id| map.remove(id)).collect()
                    };
                    for p in expired {
                        permits.add_permits(1);
                        plan.record(c, p.counted, p.from, Some(p.sent_at), Err("timeout".into()));
                    }
                }
                () = done_notify.notified() => {}
            }
        }
    };

    tokio::pin!(writer, reader);
    let mut writing = true;
    let result: io::Result<()> = loop {
        tokio::select! {
            w = &mut writer, if writing => match w {
                Ok(()) => {
                    writing = false;
                    writer_done.store(true, Ordering::Release);
                    done_notify.notify_one();
                }
                Err(e) => break Err(e),
            },
            r = &mut reader => break r,
        }
    };
    let left: Vec<Pending> = lock(&pending).drain().map(|(_, p)| p).collect();
    let kind = match &result {
        Ok(()) => Cow::Borrowed("io"),
        Err(e) => io_kind(e),
    };
    for p in left {
        plan.record(c, p.counted, p.from, Some(p.sent_at), Err(kind.clone()));
    }
    result.is_ok() || plan.over()
}
