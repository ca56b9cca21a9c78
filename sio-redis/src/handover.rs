//! With the streams protocol, the sessions of a sio node that died, handed over to Node's
//! `@socket.io/redis-streams-adapter`.
//!
//! Node's restore takes `sio:session:<pid>` without any check, so a sio node never writes a
//! connected socket's session there (see [`sessions`](crate::sessions)). When a sio node is
//! killed, its clients reconnect to any node, a Node one too: every sio node of the cluster
//! therefore looks, ten times a second, for owners whose channel lost its subscriber, and
//! writes their sessions where Node looks, as they last were and for the time they had left.
//! A client that reaches a Node node before that (clients wait at least half a second before
//! reconnecting) starts anew; a sio node takes the session anyway.
//!
//! What it reads: the set `sio:rs-owners` (the owner channels of the sio nodes that wrote live
//! sessions) and, per owner, the set `sio:rs-owned:{<owner>}` of its live sessions' pids,
//! both kept by the owners' own writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::target::Connections;

type Pool = bb8_redis::bb8::Pool<Connections>;

/// How often the sio nodes look for dead owners.
const EVERY: Duration = Duration::from_millis(100);

/// Sessions handed over per script run, so that a node that had many does not hold Redis
/// for long; the next run goes on at once.
const BUDGET: usize = 1_000;

/// Hands over up to `ARGV[1]` sessions of dead owners; 1 when some are left.
const HAND_OVER: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local budget = tonumber(ARGV[1])
for _, owner in ipairs(redis.call('SMEMBERS', 'sio:rs-owners')) do
  if redis.call('PUBSUB', 'NUMSUB', owner)[2] == 0 then
    local owned = 'sio:rs-owned:{' .. owner .. '}'
    for _, pid in ipairs(redis.call('SPOP', owned, budget)) do
      budget = budget - 1
      local record = 'sio:rs-session:{' .. pid .. '}'
      local still, session = unpack(redis.call('HMGET', record, 'owner', 'session'))
      local left = redis.call('PTTL', record)
      if still == owner and left > 0 then
        redis.call('SET', 'sio:session:' .. pid, session, 'PX', left)
        redis.call('HDEL', record, 'owner', 'session')
      end
    end
    if redis.call('EXISTS', owned) == 0 then redis.call('SREM', 'sio:rs-owners', owner) end
    if budget <= 0 then return 1 end
  end
end
return 0
";

/// The set of `owner`'s live sessions.
fn owned(owner: &str) -> String {
    format!("sio:rs-owned:{{{owner}}}")
}

/// Adds to `pipe` what keeps the handover's sets: `pid` is live on `owner` now, or not.
pub(crate) fn track(pipe: &mut redis::Pipeline, owner: &str, pid: &str, live: bool) {
    if live {
        // Again with every write: a handover may have removed an owner that only reconnected.
        pipe.cmd("SADD").arg("sio:rs-owners").arg(owner).ignore();
        pipe.cmd("SADD").arg(owned(owner)).arg(pid).ignore();
    } else {
        pipe.cmd("SREM").arg(owned(owner)).arg(pid).ignore();
    }
}

/// Starts this node's look-out; it ends once `closed` is set.
pub(crate) fn start(pool: Pool, closed: Arc<AtomicBool>) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !closed.load(Ordering::Relaxed) {
            ticks.tick().await;
            // Several runs when a node with many sessions died.
            for _ in 0..100 {
                match hand_over(&pool).await {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(err) => {
                        tracing::debug!(target: "sio::redis", %err, "session handover failed");
                        break;
                    }
                }
            }
        }
    });
}

async fn hand_over(pool: &Pool) -> Result<bool, String> {
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    let more: i64 = redis::cmd("EVAL")
        .arg(HAND_OVER)
        .arg(0)
        .arg(BUDGET)
        .query_async(&mut conn.inner)
        .await
        .map_err(|e| e.to_string())?;
    Ok(more == 1)
}
