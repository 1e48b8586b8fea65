//! Each scenario's fault envelope: the faults its fixed strategies promise to survive when the
//! swarm throws them at random on top of its fault plan, and why the others are outside.
//!
//! Generic faults are named by `Fault::kind` (crash, pause, partition, latency, loss, skew,
//! drift, slow-disk), a scenario's own by their ids. `scripts/swarm --explore` tells how often
//! each fault alone breaks a fixed strategy: read it before declaring a new scenario's line.

use faultline_core::Envelope;

/// Scenario id → envelope, one for every registered scenario (a test checks it).
pub static ENVELOPES: &[(&str, Envelope)] = &[
    (
        "cache-stampede",
        Envelope::new(
            &["cache-restart", "crash", "drift", "latency", "loss", "partition", "pause", "skew", "slow-disk"],
            "An origin slower than the load lock's lifetime: the lock expires while the first load is still out, \
            and a second reader loads the key (a lock lease cannot know the holder is merely slow).",
        ),
    ),
    (
        "idempotent-payments",
        Envelope::new(
            &["crash", "crash-after-charge", "drift", "pause", "skew", "slow-disk"],
            "Lost or slow provider answers (loss, latency, partitions, a slow provider): a charge the provider made \
            whose answer never came back stays out of the ledger — closing that gap takes reconciliation against \
            the provider's records, which no strategy here does.",
        ),
    ),
    (
        "saga",
        Envelope::new(
            &["drift", "skew", "slow-disk"],
            "Crashes, pauses, partitions, loss, latency or a slower service can hold an order open past the \
            audit's 10 s grace (a compensation retried through an outage, an event waiting on a broker that is \
            down): the check cannot tell an order still settling from a stranded one, so these are outside.",
        ),
    ),
    (
        "replication-consistency",
        Envelope::new(
            &[
                "crash",
                "drift",
                "latency",
                "loss",
                "partition",
                "pause",
                "replica-down",
                "replica-lag",
                "skew",
                "slow-disk",
            ],
            "",
        ),
    ),
    (
        "inventory-reservation",
        Envelope::new(
            &[
                "crash",
                "db-slow",
                "drift",
                "latency",
                "loss",
                "partition",
                "pause",
                "skew",
                "slow-disk",
                "slow-payments",
            ],
            "",
        ),
    ),
    (
        "bulk-import",
        Envelope::new(
            &["crash", "crash-mid-batch", "drift", "latency", "loss", "partition", "pause", "skew", "slow-disk"],
            // Every fault is inside: a replayed batch (after a crash, a timeout, a lost answer) is refused by
            // its id at commit. Not a fault: a batch size changed between two attempts under restart-from-zero,
            // then a switch to batch ids, lets a replay that does not start where a batch started through.
            "",
        ),
    ),
    (
        "event-sourcing",
        Envelope::new(
            &[
                "crash",
                "crash-projector",
                "drift",
                "latency",
                "loss",
                "partition",
                "pause",
                "schema-change",
                "skew",
                "slow-disk",
            ],
            "",
        ),
    ),
    (
        "request-dedup",
        Envelope::new(
            &["crash", "drift", "loss", "retry-storm", "skew", "slow-disk"],
            "A request held longer than the window (a paused instance, a latency spike, a partition that heals): its \
            copy may take the id first and the window forget it before the original is asked — the time-window \
            strategy promises nothing past its window.",
        ),
    ),
    (
        "consistent-hashing",
        Envelope::new(
            &[
                "add-node",
                "crash",
                "drift",
                "latency",
                "loss",
                "partition",
                "pause",
                "remove-node",
                "skew",
                "slow-disk",
            ],
            "",
        ),
    ),
    (
        "distributed-lock",
        Envelope::new(
            &[
                "crash",
                "drift",
                "jump-lock-clocks",
                "latency",
                "loss",
                "partition",
                "pause",
                "pause-holder",
                "skew",
                "slow-disk",
                "stall",
            ],
            "",
        ),
    ),
    (
        "leader-election",
        Envelope::new(
            &[
                "crash",
                "crash-leader",
                "drift",
                "drift-leader",
                "isolate-leader",
                "latency",
                "loss",
                "partition",
                "pause",
                "pause-leader",
                "skew",
                "slow-disk",
            ],
            "",
        ),
    ),
    (
        "hot-partition",
        Envelope::new(
            &["slow-disk"],
            "The check counts requests left unanswered past the 1 s timeout with the throttled ones, so crashes, \
            pauses, partitions, loss and latency spikes fail it; a partition's bucket runs on its own clock, so a \
            clock set back admits nothing until it catches up and a slow one shrinks its capacity; and a surge far \
            past the default (`viral` up to ×50) outgrows any number of shards or any cache's misses.",
        ),
    ),
    (
        "noisy-neighbor",
        Envelope::new(
            &["crash", "drift", "loss", "partition", "slow-disk"],
            "Pauses, latency spikes, clock jumps and surges put single small-tenant answers over the 250 ms bound \
            however fairly the database is shared: isolation bounds what other tenants do to you, not what the \
            network does.",
        ),
    ),
    (
        "sliding-window-analytics",
        Envelope::new(
            &["slow-disk"],
            "Not explored yet, reasoned: the counter keeps nothing on disk, so a slow disk changes nothing; a crash \
            empties its structures while the truth is kept apart, clock skew or drift moves its buckets against the \
            true window, and lost or delayed events make its counts differ from the truth the dashboard judges.",
        ),
    ),
    (
        "token-revocation",
        Envelope::new(
            &["latency", "loss", "pause", "slow-disk", "steal-refresh"],
            "Crashes and partitions can keep a logout from the auth service for good (a crash without restart, \
            users cut off from it): a logout that never reaches it is never a revocation, and the bound is counted \
            from the logout. Clock skew and drift on an instance move the expiry it reads: a clock behind accepts \
            a short-TTL token past its expiry (what JWT libraries' leeway does too). Not swarm-explored (no time): \
            chosen by the model's reasoning, then held by the swarm slice.",
        ),
    ),
    (
        "pagination",
        Envelope::new(
            &["backfill", "drift", "purge", "slow-disk"],
            "Crashes, pauses, partitions, loss, latency spikes and clock steps delay pages past the 50 ms bound (a \
            lost page waits out the reader's 10 s timeout; a stepped clock mistimes one): a cursor makes a page cheap, \
            not the network fast. Each row is still shown once under every one of them.",
        ),
    ),
    (
        "scatter-gather",
        Envelope::new(
            &["drift", "skew", "slow-disk"],
            "Crashes, pauses, partitions, latency, loss and slow shards make shards miss the deadline: the \
            completeness floor is a promise about stragglers, not about shards that cannot answer at all.",
        ),
    ),
    (
        "delivery-semantics",
        Envelope::new(
            &[
                "crash",
                "crash-after",
                "crash-before",
                "drift",
                "latency",
                "lose-acks",
                "loss",
                "partition",
                "pause",
                "skew",
                "slow-disk",
            ],
            "",
        ),
    ),
    (
        "job-queue",
        Envelope::new(
            &["crash", "drift", "hang", "latency", "loss", "partition", "pause", "poison", "skew", "slow-disk"],
            "",
        ),
    ),
    (
        "poison-message",
        Envelope::new(
            &["drift", "latency", "partition", "pause", "skew", "slow-disk"],
            "A consumer crash, lost messages, or poison messages back to back stall the partition past the lag \
            bound while retries and their backoff run: retry-then-DLQ bounds one poison message's delay, not a \
            consumer that is down.",
        ),
    ),
    (
        "bulkhead",
        Envelope::new(
            &["drift", "skew", "slow-disk"],
            "Crashes, pauses, partitions, latency and loss fail calls to the healthy dependency too: a bulkhead \
            keeps one dependency's slowness from taking the other's threads, it cannot make a broken network \
            succeed.",
        ),
    ),
    (
        "cascading-failure",
        Envelope::new(
            &["skew", "slow-disk"],
            "Crashes, pauses, partitions, latency, loss, hangs and a drifting clock on the order path fail orders \
            whatever the fallbacks: the promise is about Tax being down, not every hop at once.",
        ),
    ),
    (
        "circuit-breaker",
        Envelope::new(
            &["drift", "outage", "skew", "slow-disk"],
            "Crashes, partitions, latency and loss keep failing probes after the downstream heals (the breaker \
            rightly stays open), a pause lets calls through in a burst when it ends, and a slowness fault drawn on \
            top of the plan's can do either: the breaker's promises assume the network between it and the \
            downstream works.",
        ),
    ),
    (
        "connection-pool",
        Envelope::new(
            &["crash", "drift", "latency", "leak", "loss", "partition", "skew", "slow-disk", "slow-query"],
            "A paused instance: its wait timeouts cannot fire while it is stopped, so a request can wait past the \
            bound.",
        ),
    ),
    (
        "health-checks",
        Envelope::new(
            &["blip", "skew", "slow-disk"],
            "Crashes, pauses, partitions, latency, loss, drift and gray failures beyond the plan's make more errors \
            than the 5% bound before ejection catches up: the guard limits false ejections and flapping, it cannot \
            hide failures faster than checks see them.",
        ),
    ),
    (
        "retry-storm",
        Envelope::new(
            &["crash", "outage", "skew", "slow-disk"],
            "Pauses, partitions, latency, loss and drifting clocks make calls fail or time out outside the planned \
            outage, so retries (within the budget) amplify and recovery runs past its bound: the promises are about \
            one outage.",
        ),
    ),
    (
        "timeouts-deadlines",
        Envelope::new(
            &["crash", "drift", "loss", "partition", "skew", "slow", "slow-disk"],
            "Latency spikes and pauses delay the cancellation itself: a hop keeps working until the cancel arrives, \
            which can be past the 50 ms slack.",
        ),
    ),
    (
        "backpressure",
        Envelope::new(
            &["burst", "drift", "latency", "loss", "partition", "pause", "skew", "slow-disk", "slow-workers"],
            "A server crash: its buffer is memory, so the jobs it had accepted vanish with it (durable queues are \
            the job-queue scenario's).",
        ),
    ),
    (
        "distributed-rate-limiter",
        Envelope::new(
            &["crash", "loss", "slow-disk", "store-slow"],
            "Pauses, partitions, latency and clock skew or drift: gossip's counts arrive late and leases outlive \
            their windows on a wrong clock, so a user gets past the limit (the central atomic counter holds only \
            with clocks that agree).",
        ),
    ),
    (
        "load-balancing",
        Envelope::new(
            &["add", "drift", "skew", "slow-disk"],
            "Crashes, pauses, partitions, latency, loss and a slow instance push answers over 500 ms or pile \
            requests on one instance: the spread and p99 bounds hold for the slow instance the plan has, not for \
            any failure.",
        ),
    ),
    (
        "rate-limit-algorithms",
        Envelope::new(&["crash", "drift", "flood", "latency", "loss", "partition", "pause", "skew", "slow-disk"], ""),
    ),
    (
        "id-generator",
        Envelope::new(
            &["clock-back", "drift", "latency", "loss", "partition", "pause", "skew", "slow-disk"],
            "Two nodes given one worker id (no clock guard can tell their IDs apart), and a crash: a generator \
            restarted during the guard's stall has forgotten its last timestamp and repeats IDs (it would need to \
            keep it on disk or wait out the step on start).",
        ),
    ),
    (
        "priority-queue",
        Envelope::new(
            &["slow-disk"],
            "Crashes, pauses, partitions, latency, loss, clock jumps and surges beyond the plan's keep payments \
            waiting past their bound (and a skewed broker clock misreads the waits); so do campaigns on top of the \
            plan's: behind thousands of jobs, the sum of exponential job times (and each job's 0.2 ms on the wire) \
            strays past the 250 ms the bound leaves around the promised share. The promise is each class's share of \
            working workers on a working network, with one backlog at a time.",
        ),
    ),
    (
        "outbox",
        Envelope::new(
            &["drift", "skew", "slow-disk"],
            "Crashes, pauses, partitions, latency, loss, a longer broker outage or a relay crash hold a row's event \
            past the check's 5 s grace: the relay publishes it later, or it goes with a broker that crashed without \
            persistence — the check cannot yet tell delayed from lost, so these are outside.",
        ),
    ),
    (
        "log-pipeline",
        Envelope::new(
            &["pause", "latency", "skew", "drift", "slow-disk"],
            "A collector crash, a partition or a loss burst holds records past the delay bound (10 s): each lost \
            send waits out the agent's 2 s resend, and a crash or cut as long as the bound does the rest — a \
            spooled record is kept, not lost, but arrives late, and `delay-bounded` says so (scripts/swarm --explore: \
            a third to a half of such runs).",
        ),
    ),
    (
        "cache-invalidation",
        Envelope::new(
            &["skew", "drift", "slow-disk"],
            "The staleness promise (200 ms) holds while sets and deletes arrive: a lost or late one (loss, a \
            latency spike, a partition, a paused or crashed node) leaves the old value cached until its TTL, since \
            cache operations are not retried, as with memcached or Redis without an invalidation log. A database \
            slowdown far past the default's ×10 queues the single owner's writes, so a committed row waits longer \
            than the promise to reach the cache (scripts/swarm --explore: 8 of 12 runs at random sizes).",
        ),
    ),
    (
        "cache-write-policies",
        Envelope::new(&["crash", "drift", "latency", "loss", "partition", "pause", "skew", "slow-disk"], ""),
    ),
    (
        "distributed-cache",
        Envelope::new(
            &["crash", "drift", "loss", "skew", "slow-disk"],
            "Its checks are throughputs over one second: a latency spike, a paused node or a healed partition \
            releases the requests held meanwhile as one burst, past a node's 8,000/s or the database's 4,000/s (scripts/swarm --explore: 2 to 7 of 12 \
            runs). A hot key past what two replicas serve (over 75% of 20,000 reads/s) fails `ring-replicas` — that \
            is the local cache's lesson — and losing more nodes leaves too little memory to spare the database.",
        ),
    ),
    (
        "connection-storm",
        Envelope::new(
            &["blip", "latency", "slow-disk"],
            "A paused or crashed fleet stops its event loop while the balancer keeps admitting, so the handshakes \
            queued meanwhile lag the heartbeats past their timeout; a partition, lost connects (each waits out its \
            timeout and backs off) or a campaign beyond the fleet's handshake rate keeps clients waiting past the \
            recovery bound — admission keeps the sessions it has, it makes no fleet bigger; a clock stepped or \
            drifting under the balancer's token bucket admits a burst or starves (scripts/swarm --explore: 1 to 8 of \
            12 runs each).",
        ),
    ),
    (
        "webhook-delivery",
        Envelope::new(
            &["slow-disk"],
            "`failover` promises latency (each good customer's and each notification's deliveries within 500 ms, \
            bar 1 in 100): a latency spike, lost sends (each retried after a backoff), a partition, a paused or \
            crashed dispatcher, or a clock step under the backoff timers delays deliveries past it, and \
            the checks say so — nothing is lost, but late is what they judge (scripts/swarm --explore: 1 to 12 of 12 \
            runs each, skew and drift the fewest).",
        ),
    ),
    (
        "message-ordering",
        Envelope::new(
            &["skew", "slow-disk"],
            "`lag-bounded` promises every order applied within 5 s: a crashed or paused consumer, a partition, a \
            loss burst or a latency spike holds a partition (or, by number, the hot customer's later orders behind \
            the one missing) past it while resends back off to 1 s, and a hot customer faster than its sub-keys \
            drain outgrows any bound (scripts/swarm --explore: 1 to 11 of 12 runs each). Skew is the lesson of \
            `sub-keys-timestamp`, not of sequence numbers.",
        ),
    ),
    (
        "two-phase-commit",
        Envelope::new(
            &["crash", "crash-after-prepare", "crash-mid-commit", "drift", "skew", "slow-disk"],
            "Presumed abort is still a blocking protocol: a partition, a pause, a latency spike or a loss burst \
            that keeps the coordinator's answer from an in-doubt participant for longer than `locks-released`'s \
            bound (2 s and two asks, counted once both are up) keeps its rows locked past it, and the check says \
            so — only a replicated coordinator (Paxos Commit) closes that window. Crashes of either side are \
            inside: the bound is counted from the restart.",
        ),
    ),
    (
        "crdt-sync",
        Envelope::new(
            &["crash", "drift", "latency", "loss", "offline", "partition", "pause", "skew", "slow-disk"],
            // Every fault is inside: version vectors and CRDTs read no clock, keep the document on disk
            // through a crash, and convergence is judged only between replicas that have heard of the same
            // edits, so a cut, a loss or a pause only delays the sync.
            "",
        ),
    ),
    (
        "counter",
        Envelope::new(
            &["crash", "deschedule", "drift", "latency", "loss", "partition", "pause", "skew", "slow-disk", "storm"],
            // Every fault is inside (scripts/swarm --explore: none broke a count): a fault can stall a round but
            // never miscount it. A thread killed holding the mutex, or parked on it (memory hands the lock to the
            // dead waiter, whose successor ignores the grant), leaves the lock held for good, as a plain mutex
            // would; a lost or cut access leaves its thread waiting for memory forever.
            "",
        ),
    ),
    (
        "bank-transfer",
        Envelope::new(
            &["deschedule", "drift", "latency", "loss", "partition", "pause", "skew", "slow-disk", "storm"],
            "A thread that crashes holding a lock restarts with memory still naming it the holder: asking for that \
            lock again (locks are not re-entrant) it waits on itself, and with ordered locks it may hold one out of \
            order — a deadlock no strategy prevents (as a plain mutex's would). Every other fault can stall a round \
            (a lost access leaves its thread waiting for memory) but neither breaks the audit nor closes a cycle.",
        ),
    ),
    (
        "bounded-queue",
        Envelope::new(
            &["drift", "sigterm", "skew", "slow-disk"],
            "A graceful shutdown drains only if the process can run: anything that stalls a thread inside the \
            queue's lock or loses its accesses during a drain — crashed, paused or descheduled holding it, its \
            accesses delayed, lost or cut off, or a preemption storm that stretches every step — keeps the queue \
            from emptying before the kill, and what is queued is lost (swarm --explore, 20 seeds: 8–20 of 20 break).",
        ),
    ),
    (
        "feed-fanout",
        Envelope::new(
            &["slow-disk"],
            "Not explored yet, reasoned: the model keeps nothing on disk, so a slow disk changes nothing; a crash, \
            pause, partition or lost message stops fan-out writes or reads in flight, and latency or clock faults \
            move the read latency and staleness the checks judge.",
        ),
    ),
    (
        "read-mostly-map",
        Envelope::new(
            &["slow-disk", "storm"],
            "Copy-on-write frees the readers, not the writers: they still take turns on the writer lock, so \
            anything that stalls a writer holding it makes the other wait past its bound — paused, descheduled or \
            crashed holding it (a plain mutex stays held by the dead), its accesses delayed, lost or cut off (it \
            waits for memory's answer with the lock held), or its clock skewed or drifting (its copy is a timer on \
            that clock). Readers take no lock, so none of these makes one wait.",
        ),
    ),
    (
        "rolling-deploy",
        Envelope::new(
            &["crash", "drift", "latency", "loss", "partition", "pause", "skew", "slow-disk"],
            "A bad new version injected late in a rollout fails the readiness of every new instance already \
            serving at once (the fault flips the whole new version), so once the old fleet is stopped none is \
            left in rotation (503s): no deploy strategy can keep capacity through that (swarm seed 28 of 50).",
        ),
    ),
    (
        "canary-analysis",
        Envelope::new(
            &["drift", "skew", "slow-disk"],
            "Everything that makes requests fail or time out, since the router counts a timeout as an error of the \
            side it went to. A crashed, paused or cut-off canary is rolled back (a crash is excused, a pause or a \
            partition it cannot tell from its version's fault is a false rollback: crash 56, pause 65, partition 70 \
            of 200). A crashed or cut-off fleet, a loss burst, a latency spike past the 1 s timeout or a blip milder \
            than the shared-fault detector's 10 + 5x the fleet's usual errors dilutes the evidence toward 'errs like \
            the fleet' and may promote a bad version (loss 16, latency 6 of 200; blips, deploys and a canary going \
            bad, which the swarm lays beside the plan's v3, likewise).",
        ),
    ),
    (
        "slo-alerting",
        Envelope::new(
            &["drift", "flapping", "outage", "skew", "slow-burn", "slow-disk"],
            "Crashes, pauses, partitions, loss and latency spikes past the ingress's 100 ms timeout fail requests \
            that the SLI counts (as a balancer's 504s) but no incident in the truth's log explains: the alerts they \
            raise are real, yet judged false; and a monitor down through an incident alerts late \
            (scripts/swarm --explore, 20 seeds: crash 3, latency 3, loss 3; pause and partition 0, left out on \
            the same grounds).",
        ),
    ),
    (
        "trace-sampling",
        Envelope::new(
            &["drift", "errors", "skew", "slow", "slow-disk"],
            "A crash loses spans (a service's unexported batch, a collector's held traces: scripts/swarm --explore, \
            1,000 seeds: crash 891 broke), a pause can hold an error span past its trace's decision (24 of 1,000); \
            a partition or loss drops span batches and a latency spike past the decision wait brings spans late — \
            each leaves an error trace with holes (kept out on those grounds; their explore counts were not yet in).",
        ),
    ),
    (
        "config-rollout",
        Envelope::new(
            &["push-config", "rotate-key", "skew", "slow-disk"],
            "What holds a push past 500 ms or lets a bad config past the first stage by itself: a latency spike of \
            that size, a paused or crashed region (its push waits until it is back), a lost push or rollback, a \
            partition between the service and a region, and a drifting clock that stretches a region's cache TTL \
            (scripts/swarm --explore, 20 seeds: latency 11, pause 5, loss 2, drift 2, crash 1; partition 0, left out \
            on the same grounds).",
        ),
    ),
    (
        "feature-flags",
        Envelope::new(
            &["drift", "kill-switch", "skew", "slow-disk", "stream-drop"],
            "What holds a change back past 500 ms by itself: a latency spike of that size, a paused server or flag \
            service, a partition between them, a lost push (noticed only at the second heartbeat showing a newer \
            version, a second or more later), the flag service's delivery down (polls unanswered, streams refused: \
            a change then reaches the servers when they hear from it again), or a crashed flag service (its streams \
            are gone with it and servers notice at their 3 s read timeout, so a change right after its restart \
            reaches nobody until they reconnect). scripts/swarm --explore, 50 seeds: flag-service-down 44, \
            partition 25, loss 15, latency 9, pause 8 broke `propagation-p99`; crash none there, but it can.",
        ),
    ),
    (
        "metrics-aggregation",
        Envelope::new(
            &["crash", "drift", "gc-storm", "latency", "loss", "partition", "pause", "skew", "slow-disk"],
            // None outside: the check judges the aggregation, not the delivery — the truth is the exact p99 of
            // the latencies the window's reports carried, so a report lost, late (dropped from both sides) or from
            // a crashed host changes both alike, and a merged sketch is within α of any data (scripts/swarm
            // --explore, 20 seeds, debug: every generic fault and gc-storm, 0 broke either fixed strategy).
            "",
        ),
    ),
    (
        "chunked-upload",
        Envelope::new(
            &["crash", "disconnect", "drift", "latency", "loss", "partition", "pause", "skew", "slow-disk"],
            // None outside: both checks are promises about what the server holds — it keeps parts by index on
            // disk through its crashes and assembles only a whole file, and the client's progress counts only
            // parts the server confirmed (kept on disk through the app's restarts) — so faults delay an upload
            // but cannot undo a confirmed part; the uplink counts bytes in true time, so clock faults change no
            // transfer.
            "",
        ),
    ),
    (
        "url-shortener",
        Envelope::new(
            &["abuser", "crash", "drift", "latency", "loss", "partition", "pause", "skew", "slow-disk"],
            "",
        ),
    ),
    (
        "n-plus-one",
        Envelope::new(
            &["drift", "skew", "slow-disk"],
            "A request needs every one of its queries: a crash, pause, partition or lost message fails or stalls \
            the requests in flight (a query unanswered in 5 s fails its request), past the 1% the p99 check allows; a \
            big enough traffic spike or slow database saturates even one query per level, and a link latency spike \
            adds its delay once per nesting level.",
        ),
    ),
];

/// The envelope `id` declares (empty if it declares none).
pub fn envelope(id: &str) -> Envelope {
    ENVELOPES.iter().find(|(s, _)| *s == id).map_or(Envelope::new(&[], ""), |&(_, e)| e)
}
