//! One task per core shard: feeds it messages and timer ticks and carries out
//! what it asks for.

use std::sync::Arc;
use std::time::Instant;

use pbx_core::{Inbound, Output, RouteDecision, Shard};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::control::{self, ShardCommand};
use super::io::Io;
use super::persist::Persist;
use super::plugins::{self, Job, PluginHost, Workers};
use pbx_plugin::pool::Refused;

/// The plugin side of the call path, when plugins route calls.
pub(crate) struct Routing {
    pub(crate) host: Arc<PluginHost>,
    pub(crate) workers: Arc<Workers>,
    pub(crate) decisions: mpsc::Receiver<(u64, RouteDecision)>,
}

/// Messages taken from the queue per wake-up.
const BATCH: usize = 64;

/// Longest a call's record waits for its handler's last step (the step has
/// the plugin deadlines; this covers a full worker queue).
const FINAL_STEP_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

#[allow(
    clippy::too_many_arguments,
    reason = "the task owns one queue per kind of input, plus its outlets"
)]
pub(crate) async fn run(
    mut shard: Shard,
    mut rx: mpsc::Receiver<Inbound>,
    mut commands: mpsc::Receiver<ShardCommand>,
    mut media: mpsc::UnboundedReceiver<super::media::ToShard>,
    mut routing: Option<Routing>,
    io: Arc<Io>,
    persist: mpsc::Sender<Persist>,
    stop: CancellationToken,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        // Run due timers first so a busy queue cannot starve them.
        let deadline = shard.poll_timeout();
        if deadline.is_some_and(|d| d <= Instant::now()) {
            shard.handle_timeout(Instant::now());
            drain(&mut shard, routing.as_ref(), &io, &persist).await;
            continue;
        }
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            n = rx.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    break;
                }
                let now = Instant::now();
                for inbound in batch.drain(..) {
                    shard.handle(now, inbound);
                }
            }
            Some((call, decision)) = next_decision(&mut routing) => {
                shard.route_decided(Instant::now(), call, decision);
            }
            Some(command) = commands.recv() => control::apply(&mut shard, Instant::now(), command),
            Some(report) = media.recv() => match report {
                super::media::ToShard::Idle(call) => shard.media_idle(Instant::now(), call),
                super::media::ToShard::Notice(call, notice) => {
                    shard.media_notice(Instant::now(), call, notice);
                }
                super::media::ToShard::Mailbox(tenant, mailbox, counts) => {
                    shard.notify_mailbox(Instant::now(), tenant, &mailbox, counts);
                }
            },
            () = sleep => shard.handle_timeout(Instant::now()),
        }
        drain(&mut shard, routing.as_ref(), &io, &persist).await;
    }
    shard.shutdown(Instant::now());
    drain(&mut shard, routing.as_ref(), &io, &persist).await;
}

async fn next_decision(routing: &mut Option<Routing>) -> Option<(u64, RouteDecision)> {
    match routing {
        Some(r) => r.decisions.recv().await,
        None => std::future::pending().await,
    }
}

/// Carries out every pending output of the shard.
async fn drain(
    shard: &mut Shard,
    routing: Option<&Routing>,
    io: &Arc<Io>,
    persist: &mpsc::Sender<Persist>,
) {
    while let Some(output) = shard.poll_output() {
        let item = match output {
            Output::Transmit { dest, local, bytes } => {
                io.transmit(dest, local, bytes).await;
                continue;
            }
            Output::Route(req) => {
                let call = req.call;
                let refused = match routing {
                    Some(r) => r.workers.submit(Job::Route(req)).err(),
                    None => Some(Refused::Closed),
                };
                if let Some(why) = refused {
                    tracing::warn!(call, %why, "call refused before routing");
                    let phrase = match why {
                        Refused::TenantShare => plugins::SHARE_EXHAUSTED,
                        Refused::Full | Refused::Closed => "Service Unavailable",
                    };
                    shard.route_decided(Instant::now(), call, RouteDecision::reject(503, phrase));
                }
                continue;
            }
            Output::AuthFailure {
                source,
                domain,
                user,
                method,
                tenant,
            } => {
                let now = Instant::now();
                io.guard()
                    .auth_failure(source, &domain, &user, &method, tenant, now);
                continue;
            }
            Output::Forward { shard, inbound } => {
                io.forward(shard, inbound);
                continue;
            }
            Output::Authenticated { source } => {
                io.guard().authenticated(source, Instant::now());
                continue;
            }
            Output::Registration(change) => Persist::Registration(change),
            Output::Answered(cdr) => Persist::Answered(cdr),
            Output::Cdr(mut cdr) => {
                let Some(r) = routing else {
                    if persist.send(Persist::Cdr(cdr)).await.is_err() {
                        tracing::error!("write-behind task is gone; a record was lost");
                    }
                    continue;
                };
                let (class, last) = r.host.release(&mut cdr);
                if let Some(class) = class
                    && let Err(why) = r.workers.submit(Job::Ended(cdr.clone(), class))
                {
                    tracing::warn!(%why, "call-ended not delivered");
                }
                match last {
                    Some(last) => {
                        // The handler hears how the answered call ended (its
                        // tags go into the record) on the tenant's share of
                        // the workers, never holding up this shard.
                        let (reply, tagged) = tokio::sync::oneshot::channel();
                        let plain = cdr.clone();
                        if let Err(why) = r.workers.submit(Job::Final(cdr, last, reply)) {
                            tracing::warn!(%why, "call handler's last step not run");
                        }
                        let persist = persist.clone();
                        tokio::spawn(async move {
                            let cdr = tokio::time::timeout(FINAL_STEP_WAIT, tagged)
                                .await
                                .ok()
                                .and_then(Result::ok)
                                .unwrap_or(plain);
                            if persist.send(Persist::Cdr(cdr)).await.is_err() {
                                tracing::error!("write-behind task is gone; a record was lost");
                            }
                        });
                        continue;
                    }
                    None => Persist::Cdr(cdr),
                }
            }
        };
        // Waiting here is the back-pressure: a slow database slows the shard,
        // whose queue then sheds load, rather than losing records.
        if persist.send(item).await.is_err() {
            tracing::error!("write-behind task is gone; a record was lost");
        }
    }
}
