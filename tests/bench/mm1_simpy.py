"""The M/M/1 model of core/benches/models.rs (rho = 0.9, mean gap 100, mean service 90)
in SimPy, counting the same events (arrivals, job deliveries, completions)."""
import random
import sys
import time

import simpy


def run(events):
    env = simpy.Environment()
    rng = random.Random(1)
    server = simpy.Resource(env, capacity=1)
    count = [0]

    def job(env):
        count[0] += 1  # the job reaches the server
        with server.request() as req:
            yield req
            yield env.timeout(rng.expovariate(1 / 90))
            count[0] += 1  # completion

    def source(env):
        while True:
            yield env.timeout(rng.expovariate(1 / 100))
            count[0] += 1  # arrival
            env.process(job(env))

    env.process(source(env))
    while count[0] < events:
        env.step()
    return count[0]


if __name__ == "__main__":
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
    run(events // 20)
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        n = run(events)
        best = max(best, n / (time.perf_counter() - t))
    print(f"SIMPY|M/M/1, rho 0.9|{best:.0f}")
