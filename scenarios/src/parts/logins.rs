//! Users holding access and refresh tokens, an attacker with a copied refresh token, and the auth service's answers, audited for a stolen refresh token used after its owner.
//!
//! [`Population`] is one node standing for many users: each logs in, refreshes its access
//! token at a share of its life ([`REFRESH_AT`]), asks again when an answer is late, logs in
//! again when refused, and logs out on demand — the logout retried until acknowledged, and
//! the old access token's copy (an open tab, a copied token) tried on for a while, labelled
//! with when it was revoked so that an audit can judge the instance that accepts it. A thief
//! ([`Population::steal`]) copies a user's refresh token and refreshes with it as the owner
//! would. Every ask is numbered per holder, so an answer to an earlier ask is ignored.
//!
//! [`AuthBook`] is the auth service's side ([`Families`]), answering asks; it also keeps the
//! god's-eye audit of the check "a stolen refresh token is detected on reuse": once both the
//! thief and, after it, the owner have shown a family's refresh token, granting the thief a
//! new token is a breach. With rotation, the second of the two to show a token shows a
//! retired one and the family is revoked; without it both are served for as long as the
//! session lives.

use crate::parts::arrivals::OpenLoop;
use crate::parts::tokens::{Access, Families, Refresh, Refreshed, RevocationLog};
use faultline_core::{Breach, Ctx, Micros, Node, NodeId, Time, MICROS_PER_S};

/// Clients refresh at this share of an access token's life.
pub const REFRESH_AT: f64 = 0.8;
/// A client asks again if the auth service has not answered in this long.
pub const RETRY_US: Micros = MICROS_PER_S;

/// What a client asks the auth service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ask {
    Login {
        user: u32,
        seq: u32,
    },
    Refresh {
        user: u32,
        token: Refresh,
        thief: bool,
        seq: u32,
    },
    /// `at`: when the user logged out (true time, the audit's start).
    Logout {
        family: u64,
        at: Time,
    },
}

/// What the auth service answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Issued { user: u32, thief: bool, seq: u32, access: Access, token: Refresh, ttl_us: Micros },
    Refused { user: u32, thief: bool, seq: u32, reuse: bool },
    LoggedOut { family: u64 },
}

/// The population's timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// A request from a random user (open loop), a logout, the round of revoked copies.
    Arrive,
    Logout,
    Copies,
    Renew {
        user: u32,
        seq: u32,
    },
    ThiefRenew {
        seq: u32,
    },
    RetryLogout {
        family: u64,
    },
}

/// How a scenario's messages and timers carry the population's, and where its instances are.
pub struct Wiring<N: Node> {
    pub auth: NodeId,
    pub first_instance: NodeId,
    pub ask: fn(Ask) -> N::Msg,
    pub due: fn(Due) -> N::Timer,
    /// A request with an access token and, for the audit, when that token was revoked.
    pub request: fn(Access, Option<Time>) -> N::Msg,
}

/// A user's (or the thief's) tokens; `seq` numbers its asks.
#[derive(Clone, Debug, Default)]
pub struct Holder {
    pub access: Option<Access>,
    pub refresh: Option<Refresh>,
    seq: u32,
    /// Its session began before the run: its first refresh comes at a random point of its
    /// token's life, as in a steady state, not all users at once.
    spread: bool,
    /// When its access token was revoked, once the population knows (the audit's label).
    revoked: Option<Time>,
}

/// The pace of the copies of revoked tokens: each round's gap, and how long a copy is tried.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    pub copy_every_us: Micros,
    pub copy_for_us: Micros,
}

#[derive(Clone, Debug)]
pub struct Population {
    pub users: Vec<Holder>,
    instances: u64,
    requests: OpenLoop,
    logouts: OpenLoop,
    pub thief: Option<Holder>,
    /// Copies of revoked access tokens still tried: the token, when revoked, until when.
    pub copies: Vec<(Access, Time, Time)>,
    /// Logouts not yet acknowledged: family and logout time.
    logging_out: Vec<(u64, Time)>,
}

impl Population {
    /// `users` users sending requests to `instances` instances.
    pub fn new(users: usize, instances: u64) -> Population {
        let (requests, logouts) = (OpenLoop::poisson(0.0), OpenLoop::poisson(0.0));
        let users = vec![Holder::default(); users];
        Population { users, instances, requests, logouts, thief: None, copies: Vec::new(), logging_out: Vec::new() }
    }

    /// At the start and after a restart (timers died): requests and logouts at these rates,
    /// every user logging in afresh within a second, logouts not acknowledged asked again.
    pub fn start<N: Node>(&mut self, w: &Wiring<N>, rates_per_s: (f64, f64), pace: Pace, ctx: &mut Ctx<N>) {
        self.requests.start_at(rates_per_s.0, ctx, (w.due)(Due::Arrive));
        self.logouts.start_at(rates_per_s.1, ctx, (w.due)(Due::Logout));
        ctx.set_timer(pace.copy_every_us, (w.due)(Due::Copies));
        for (user, u) in self.users.iter_mut().enumerate() {
            *u = Holder { seq: u.seq + 1, spread: true, ..Holder::default() };
            let at = ctx.rng().range(0, MICROS_PER_S);
            ctx.set_timer(at, (w.due)(Due::Renew { user: user as u32, seq: u.seq }));
        }
        for &(family, _) in &self.logging_out {
            ctx.set_timer(0, (w.due)(Due::RetryLogout { family }));
        }
    }

    /// A random user holding tokens, if one is found in a few tries (most users hold them).
    pub fn pick<N: Node>(&self, ctx: &mut Ctx<N>) -> Option<usize> {
        (0..8).map(|_| ctx.rng().pick(self.users.len())).find(|&u| self.users[u].refresh.is_some())
    }

    /// New rates of requests and logouts, from now.
    pub fn set_rates<N: Node>(&mut self, w: &Wiring<N>, rates_per_s: (f64, f64), ctx: &mut Ctx<N>) {
        self.requests.set_rate_per_s(rates_per_s.0, ctx, (w.due)(Due::Arrive));
        self.logouts.set_rate_per_s(rates_per_s.1, ctx, (w.due)(Due::Logout));
    }

    /// A request with `token` to a random instance.
    fn send<N: Node>(&self, w: &Wiring<N>, token: Access, revoked: Option<Time>, ctx: &mut Ctx<N>) {
        let to = w.first_instance + ctx.rng().below(self.instances) as NodeId;
        ctx.send(to, (w.request)(token, revoked));
    }

    /// The copies of revoked tokens (and the thief's token) still tried, each to a random instance.
    fn try_copies<N: Node>(&mut self, w: &Wiring<N>, ctx: &mut Ctx<N>) {
        let now = ctx.truth();
        self.copies.retain(|&(_, _, until)| until > now);
        let thief = self.thief.as_ref().and_then(|t| t.access.map(|a| (a, t.revoked)));
        for (token, revoked) in self.copies.iter().map(|&(a, at, _)| (a, Some(at))).chain(thief) {
            self.send(w, token, revoked, ctx);
        }
    }

    /// A random user logs out (then logs in again); its old access token's copy is tried
    /// for `copy_for_us` more.
    fn logout<N: Node>(&mut self, w: &Wiring<N>, copy_for_us: Micros, ctx: &mut Ctx<N>) {
        let Some(user) = self.pick(ctx) else { return };
        let (now, u) = (ctx.truth(), &mut self.users[user]);
        let family = u.refresh.take().expect("picked with tokens").family;
        self.copies.extend(u.access.take().map(|a| (a, now, now.plus(copy_for_us))));
        u.seq += 1;
        ctx.set_timer(0, (w.due)(Due::Renew { user: user as u32, seq: u.seq }));
        self.logging_out.push((family, now));
        ctx.set_timer(0, (w.due)(Due::RetryLogout { family }));
        self.revoke_thief(family, now);
    }

    /// The fault: the thief copies a random user's tokens and refreshes at once.
    pub fn steal<N: Node>(&mut self, w: &Wiring<N>, ctx: &mut Ctx<N>) -> Option<(usize, u64)> {
        let user = self.pick(ctx)?;
        let u = &self.users[user];
        let seq = self.thief.as_ref().map_or(0, |t| t.seq + 1);
        self.thief = Some(Holder { access: u.access, refresh: u.refresh, seq, spread: false, revoked: None });
        ctx.set_timer(0, (w.due)(Due::ThiefRenew { seq }));
        Some((user, u.refresh.expect("picked with tokens").family))
    }

    pub fn on_due<N: Node>(&mut self, w: &Wiring<N>, due: Due, pace: Pace, ctx: &mut Ctx<N>) {
        let ask = match due {
            Due::Arrive => {
                self.requests.on_timer(ctx, (w.due)(due));
                if let Some(access) = self.pick(ctx).and_then(|u| self.users[u].access) {
                    self.send(w, access, None, ctx);
                }
                return;
            }
            Due::Logout => {
                self.logouts.on_timer(ctx, (w.due)(due));
                return self.logout(w, pace.copy_for_us, ctx);
            }
            Due::Copies => {
                self.try_copies(w, ctx);
                ctx.set_timer(pace.copy_every_us, (w.due)(due));
                return;
            }
            Due::Renew { user, seq } => match &self.users[user as usize] {
                u if u.seq != seq => return,
                u => match u.refresh {
                    Some(token) => Ask::Refresh { user, token, thief: false, seq },
                    None => Ask::Login { user, seq },
                },
            },
            Due::ThiefRenew { seq } => match &self.thief {
                Some(Holder { refresh: Some(token), access, seq: s, .. }) if *s == seq => {
                    Ask::Refresh { user: access.map_or(0, |a| a.user), token: *token, thief: true, seq }
                }
                _ => return,
            },
            Due::RetryLogout { family } => match self.logging_out.iter().find(|l| l.0 == family) {
                Some(&(_, at)) => Ask::Logout { family, at },
                None => return,
            },
        };
        ctx.send(w.auth, (w.ask)(ask));
        ctx.set_timer(RETRY_US, (w.due)(due));
    }

    pub fn on_answer<N: Node>(&mut self, w: &Wiring<N>, answer: Answer, ctx: &mut Ctx<N>) {
        match answer {
            Answer::Issued { user, thief, seq, access, token, ttl_us } => {
                let Some(h) = self.holder(user, thief, seq) else { return };
                (h.access, h.refresh, h.seq) = (Some(access), Some(token), seq + 1);
                let next = (REFRESH_AT * ttl_us as f64) as Micros;
                let next = if std::mem::take(&mut h.spread) { ctx.rng().range(0, next) } else { next };
                let due = if thief { Due::ThiefRenew { seq: seq + 1 } } else { Due::Renew { user, seq: seq + 1 } };
                ctx.set_timer(next, (w.due)(due));
            }
            Answer::Refused { user, thief, seq, reuse } => {
                let now = ctx.truth();
                let Some(h) = self.holder(user, thief, seq) else { return };
                let family = h.refresh.take().map(|r| r.family);
                h.seq += 1;
                if thief {
                    // The thief keeps trying its last access token; it is revoked by now.
                    h.revoked = h.revoked.or(Some(now));
                    return;
                }
                h.access = None;
                let seq = h.seq;
                ctx.set_timer(0, (w.due)(Due::Renew { user, seq }));
                if let Some(f) = family.filter(|_| reuse) {
                    self.revoke_thief(f, now);
                }
            }
            Answer::LoggedOut { family } => self.logging_out.retain(|l| l.0 != family),
        }
    }

    fn holder(&mut self, user: u32, thief: bool, seq: u32) -> Option<&mut Holder> {
        let h = if thief { self.thief.as_mut() } else { self.users.get_mut(user as usize) };
        h.filter(|h| h.seq == seq)
    }

    /// The thief's token of `family` was revoked at `at` (its owner logged out, or reuse was told).
    fn revoke_thief(&mut self, family: u64, at: Time) {
        if let Some(t) = self.thief.as_mut().filter(|t| t.access.is_some_and(|a| a.family == family)) {
            t.revoked = t.revoked.or(Some(at));
        }
    }

    /// Users holding tokens.
    pub fn logged_in(&self) -> usize {
        self.users.iter().filter(|u| u.access.is_some()).count()
    }
}

/// The auth service's families, its log of revoked access tokens, and the stolen-refresh audit.
#[derive(Clone, Debug, Default)]
pub struct AuthBook {
    pub families: Families,
    pub log: RevocationLog,
    /// Families the thief refreshed in, and whether their owner refreshed after it did.
    shared: Vec<(u64, bool)>,
    pub reuses: u64,
    pub breach: Breach,
}

impl AuthBook {
    /// Answers an ask at `now` (its clock; `truth` for the audit), issuing tokens of `ttl_us`
    /// and rotating refresh tokens if `rotate`. Also returns the access tokens revoked by it,
    /// each with when it was revoked (true time) and its version in the log.
    pub fn answer(
        &mut self,
        ask: Ask,
        rotate: bool,
        at: (Time, Time),
        ttl_us: Micros,
    ) -> (Answer, Vec<(Access, Time, u64)>) {
        let (answer, revoked) = self.decide(ask, rotate, at, ttl_us);
        let revoked = revoked.into_iter().map(|(a, at)| (a, at, self.log.push(a.id, at))).collect();
        (answer, revoked)
    }

    fn decide(
        &mut self,
        ask: Ask,
        rotate: bool,
        (now, truth): (Time, Time),
        ttl_us: Micros,
    ) -> (Answer, Vec<(Access, Time)>) {
        match ask {
            Ask::Login { user, seq } => {
                let (access, token) = self.families.login(user, now, ttl_us);
                (Answer::Issued { user, thief: false, seq, access, token, ttl_us }, Vec::new())
            }
            Ask::Logout { family, at } => {
                let revoked = self.families.logout(family, now).into_iter().map(|a| (a, at)).collect();
                (Answer::LoggedOut { family }, revoked)
            }
            Ask::Refresh { user, token, thief, seq } => {
                let shared = self.shared.iter().position(|s| s.0 == token.family);
                match (thief, shared) {
                    (true, None) => self.shared.push((token.family, false)),
                    (false, Some(i)) => self.shared[i].1 = true,
                    _ => {}
                }
                match self.families.refresh(user, token, rotate, now, ttl_us) {
                    Refreshed::Issued(access, next) => {
                        if thief && shared.is_some_and(|i| self.shared[i].1) {
                            let family = token.family;
                            let what = format!("the thief got a new token of user {user}'s family {family} after its owner used it too");
                            self.breach.record(what, truth);
                        }
                        (Answer::Issued { user, thief, seq, access, token: next, ttl_us }, Vec::new())
                    }
                    Refreshed::Reuse(revoked) => {
                        self.reuses += 1;
                        let revoked = revoked.into_iter().map(|a| (a, truth)).collect();
                        (Answer::Refused { user, thief, seq, reuse: true }, revoked)
                    }
                    Refreshed::Refused => (Answer::Refused { user, thief, seq, reuse: false }, Vec::new()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Micros = 10 * MICROS_PER_S;

    fn refresh(book: &mut AuthBook, token: Refresh, thief: bool, rotate: bool, t: u64) -> (Answer, usize) {
        let ask = Ask::Refresh { user: 7, token, thief, seq: 0 };
        let (answer, revoked) = book.answer(ask, rotate, (Time(t), Time(t)), TTL);
        (answer, revoked.len())
    }

    fn issued(a: &Answer) -> Refresh {
        match a {
            Answer::Issued { token, .. } => *token,
            other => panic!("{other:?}"),
        }
    }

    /// The theft: the thief refreshes with the stolen token, then the owner with the same one,
    /// then the thief with what it got.
    fn theft(rotate: bool) -> AuthBook {
        let mut book = AuthBook::default();
        let (login, _) = book.answer(Ask::Login { user: 7, seq: 0 }, rotate, (Time(0), Time(0)), TTL);
        let stolen = issued(&login);
        let (a, _) = refresh(&mut book, stolen, true, rotate, 5);
        let thiefs = issued(&a);
        let (owner, revoked) = refresh(&mut book, stolen, false, rotate, 8);
        if rotate {
            // The owner shows the retired token: the family (login's and the thief's tokens) is revoked.
            assert_eq!((owner, revoked), (Answer::Refused { user: 7, thief: false, seq: 0, reuse: true }, 2));
        }
        let (again, _) = refresh(&mut book, thiefs, true, rotate, 13);
        assert_eq!(matches!(again, Answer::Refused { .. }), rotate);
        book
    }

    #[test]
    fn rotation_catches_the_thief_and_the_audit_holds() {
        let book = theft(true);
        assert_eq!((book.reuses, book.breach.latest()), (1, None));
    }

    #[test]
    fn without_rotation_the_thief_is_served_after_the_owner_and_the_audit_says_so() {
        let book = theft(false);
        assert_eq!(book.reuses, 0);
        assert!(book.breach.latest().is_some_and(|w| w.contains("family 1")), "{:?}", book.breach.latest());
    }

    #[test]
    fn a_logout_revokes_the_unexpired_tokens_at_the_logout_time() {
        let mut book = AuthBook::default();
        let (login, _) = book.answer(Ask::Login { user: 3, seq: 0 }, true, (Time(0), Time(0)), TTL);
        let family = issued(&login).family;
        let (answer, revoked) = book.answer(Ask::Logout { family, at: Time(40) }, true, (Time(50), Time(50)), TTL);
        assert_eq!(answer, Answer::LoggedOut { family });
        assert_eq!(revoked.iter().map(|r| (r.1, r.2)).collect::<Vec<_>>(), vec![(Time(40), 1)]);
        assert_eq!(book.log.since(0), vec![(revoked[0].0.id, Time(40))], "logged as version 1");
        let (again, _) = book.answer(Ask::Logout { family, at: Time(40) }, true, (Time(60), Time(60)), TTL);
        assert_eq!(again, Answer::LoggedOut { family }, "a retried logout is acknowledged again");
    }
}
