//! What a finished attempt of a call means: the one place that decides whether the caller gets an answer
//! now, whether the call goes to another provider or back to the wait queue, and what the attempt says
//! about the provider's health. Pure: the consumer shard reports what happened, applies the verdict.
//!
//! | attempt                                   | next          | health   |
//! |-------------------------------------------|---------------|----------|
//! | answered 60 (service not found: never ran) | try elsewhere | failure  |
//! | answered 100 (thread pool exhausted)      | requeue       | overload |
//! | answered 31 / 80 / 50 (provider side failed) | answer     | failure  |
//! | answered any other status                 | answer        | success  |
//! | connect failed                            | try elsewhere | failure  |
//! | pool backing off (not contacted)          | try elsewhere | neutral  |
//! | connection lost with the call on it       | try elsewhere if idempotent, else answer | failure |
//! | timed out, undecodable answer             | answer        | failure  |
//! | request not encodable                     | answer        | neutral  |
//!
//! A retry (elsewhere or requeued) is granted by the call's [`RetryBudget`]; without one left the caller
//! gets the attempt's answer or error.

use mesh_dubbo::Status;

/// How one attempt (one send of the call to one provider) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The provider answered with this Dubbo status.
    Answered { status: Status },
    /// The connection to the provider could not be made: the call never left.
    ConnectFailed,
    /// The provider's pool is backing off after failed dials: not contacted.
    BackingOff,
    /// The connection died with the call on it: the call may have run.
    ConnectionLost,
    /// No answer within the call's timeout.
    TimedOut,
    /// The answer could not be decoded.
    BadAnswer,
    /// The request could not be encoded (the caller's fault): nothing was sent.
    EncodeFailed,
}

/// What the call does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The caller gets this attempt's answer (or error).
    Answer,
    /// Send the call to another provider (this one excluded): it did not run here, or may run twice.
    TryElsewhere,
    /// The provider was only full: wait for room at any provider, this one included.
    Requeue,
}

/// What the attempt says about the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthEffect {
    /// It served the call: counts towards recovery, its latency is a sample.
    Success,
    /// It failed (or could not be reached): counts towards ejection and backoff.
    Failure,
    /// It refused for lack of threads: lower its learnt concurrency limit.
    Overload,
    /// Says nothing about the provider.
    Neutral,
}

/// The verdict on one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub next: Next,
    pub health: HealthEffect,
}

impl Outcome {
    /// Whether the balancer counts the attempt as a good sample (latency stats, error rate): only a
    /// served call.
    pub fn ok_for_balancer(&self) -> bool {
        self.health == HealthEffect::Success
    }
}

/// The verdict on `attempt` for a call that is (or is not) safe to run twice.
pub fn classify(attempt: Attempt, idempotent: bool) -> Outcome {
    use HealthEffect::*;
    use Next::*;
    let (next, health) = match attempt {
        Attempt::Answered { status } => match status {
            // Never ran there: its agent is draining or cannot reach its provider.
            Status::SERVICE_NOT_FOUND => (TryElsewhere, Failure),
            // Never ran: every thread of the provider is busy.
            Status::SERVER_THREADPOOL_EXHAUSTED => (Requeue, Overload),
            // The provider side failed the call (timed out, failed, could not read or answer).
            Status::SERVER_TIMEOUT | Status::SERVER_ERROR | Status::BAD_RESPONSE => (Answer, Failure),
            _ => (Answer, Success),
        },
        Attempt::ConnectFailed => (TryElsewhere, Failure),
        Attempt::BackingOff => (TryElsewhere, Neutral),
        Attempt::ConnectionLost if idempotent => (TryElsewhere, Failure),
        Attempt::ConnectionLost => (Answer, Failure),
        Attempt::TimedOut | Attempt::BadAnswer => (Answer, Failure),
        Attempt::EncodeFailed => (Answer, Neutral),
    };
    Outcome { next, health }
}

/// The retries one call may still make, whatever their kind (another provider or the wait queue again):
/// a call is sent at most `1 + retries` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryBudget {
    left: usize,
}

impl RetryBudget {
    pub fn new(retries: usize) -> Self {
        RetryBudget { left: retries }
    }

    /// Retries left.
    pub fn left(&self) -> usize {
        self.left
    }

    /// What the call actually does after an attempt whose verdict is `next`: a retry spends one unit of
    /// the budget; with none left, the caller gets the answer.
    pub fn grant(&mut self, next: Next) -> Next {
        match next {
            Next::Answer => Next::Answer,
            _ if self.left == 0 => Next::Answer,
            retry => {
                self.left -= 1;
                retry
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use HealthEffect::*;
    use Next::*;

    #[test]
    fn every_dubbo_status_by_idempotence() {
        // (status, next, health): the same whether or not the call is idempotent (it was answered).
        let table: [(u8, Next, HealthEffect); 11] = [
            (20, Answer, Success),
            (30, Answer, Success),
            (31, Answer, Failure),
            (40, Answer, Success),
            (50, Answer, Failure),
            (60, TryElsewhere, Failure),
            (70, Answer, Success),
            (80, Answer, Failure),
            (90, Answer, Success),
            (100, Requeue, Overload),
            (255, Answer, Success),
        ];
        for (status, next, health) in table {
            for idempotent in [false, true] {
                let got = classify(
                    Attempt::Answered {
                        status: Status(status),
                    },
                    idempotent,
                );
                assert_eq!(
                    got,
                    Outcome { next, health },
                    "status {status}, idempotent {idempotent}"
                );
                assert_eq!(got.ok_for_balancer(), health == Success, "status {status}");
            }
        }
    }

    #[test]
    fn every_error_by_idempotence() {
        // (attempt, idempotent, next, health)
        let table = [
            (Attempt::ConnectFailed, false, TryElsewhere, Failure),
            (Attempt::ConnectFailed, true, TryElsewhere, Failure),
            (Attempt::BackingOff, false, TryElsewhere, Neutral),
            (Attempt::BackingOff, true, TryElsewhere, Neutral),
            (Attempt::ConnectionLost, false, Answer, Failure),
            (Attempt::ConnectionLost, true, TryElsewhere, Failure),
            (Attempt::TimedOut, false, Answer, Failure),
            (Attempt::TimedOut, true, Answer, Failure),
            (Attempt::BadAnswer, false, Answer, Failure),
            (Attempt::BadAnswer, true, Answer, Failure),
            (Attempt::EncodeFailed, false, Answer, Neutral),
            (Attempt::EncodeFailed, true, Answer, Neutral),
        ];
        for (attempt, idempotent, next, health) in table {
            let got = classify(attempt, idempotent);
            assert_eq!(
                got,
                Outcome { next, health },
                "{attempt:?}, idempotent {idempotent}"
            );
            assert!(!got.ok_for_balancer(), "{attempt:?} is no good sample");
        }
    }

    #[test]
    fn budget_grants_retries_of_any_kind_until_spent() {
        let mut b = RetryBudget::new(2);
        assert_eq!(b.grant(Answer), Answer);
        assert_eq!(b.left(), 2, "an answer spends nothing");
        assert_eq!(b.grant(Requeue), Requeue);
        assert_eq!(b.grant(TryElsewhere), TryElsewhere);
        assert_eq!(b.left(), 0);
        assert_eq!(b.grant(TryElsewhere), Answer);
        assert_eq!(b.grant(Requeue), Answer);
        let mut none = RetryBudget::new(0);
        assert_eq!(none.grant(TryElsewhere), Answer);
    }
}
