package dev.prestop.lab.consumer;

import java.time.Duration;
import java.time.Instant;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;

import jakarta.annotation.PreDestroy;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.boot.context.event.ApplicationReadyEvent;
import org.springframework.boot.http.client.ClientHttpRequestFactoryBuilder;
import org.springframework.boot.http.client.ClientHttpRequestFactorySettings;
import org.springframework.cloud.client.ServiceInstance;
import org.springframework.cloud.client.loadbalancer.LoadBalancerClient;
import org.springframework.context.event.EventListener;
import org.springframework.stereotype.Component;
import org.springframework.web.client.RestClient;

/**
 * Sends requests to lab.service at lab.rate per second with Poisson arrivals.
 *
 * <p>One scheduler thread draws exponential gaps and hands each arrival to a bounded
 * pool of workers (Java 17: no virtual threads). A worker picks the instance with
 * {@link LoadBalancerClient#choose(String)}, the same call a @LoadBalanced client makes,
 * so it sees the same cached instance list, then calls it with a plain RestClient.
 */
@Component
public class LoadDriver {

    private static final Logger log = LoggerFactory.getLogger(LoadDriver.class);

    private final LabProperties props;
    private final LoadBalancerClient loadBalancer;
    private final RecordStore records;
    private final RestClient http;
    private final ThreadPoolExecutor workers;
    private final AtomicInteger inFlight = new AtomicInteger();

    private volatile double rate;
    private volatile boolean stopped;
    private volatile Thread scheduler;

    public LoadDriver(LabProperties props, LoadBalancerClient loadBalancer, RecordStore records) {
        this.props = props;
        this.loadBalancer = loadBalancer;
        this.records = records;
        this.rate = props.rate();
        this.http = RestClient.builder().requestFactory(requestFactory(props)).build();
        AtomicInteger n = new AtomicInteger();
        this.workers = new ThreadPoolExecutor(props.workers(), props.workers(), 30, TimeUnit.SECONDS,
                new ArrayBlockingQueue<>(props.queue()), r -> {
                    Thread t = new Thread(r, "load-" + n.incrementAndGet());
                    t.setDaemon(true);
                    return t;
                });
    }

    /**
     * The factory RestClient would pick here (Apache HttpClient 5 is on the class path,
     * brought by the Eureka client): pooled keep-alive connections, as in a real app.
     * Only the pool size is raised to the worker count; its default of 5 per route would
     * queue requests inside the client and blur the latencies the lab measures.
     */
    private static org.springframework.http.client.ClientHttpRequestFactory requestFactory(LabProperties props) {
        Duration timeout = Duration.ofMillis(props.timeoutMs());
        return ClientHttpRequestFactoryBuilder.httpComponents()
                .withConnectionManagerCustomizer(pool -> pool
                        .setMaxConnTotal(props.workers() * 2)
                        .setMaxConnPerRoute(props.workers()))
                .build(ClientHttpRequestFactorySettings.defaults()
                        .withConnectTimeout(timeout)
                        .withReadTimeout(timeout));
    }

    @EventListener(ApplicationReadyEvent.class)
    void start() {
        Thread t = new Thread(this::schedule, "load-scheduler");
        t.setDaemon(true);
        scheduler = t;
        t.start();
        log.info("load driver ready: rate={}/s service={} latency={}ms tail={}@{}ms timeout={}ms workers={}",
                rate, props.service(), props.latencyMs(), props.tailProbability(), props.tailMs(),
                props.timeoutMs(), props.workers());
    }

    public void setRate(double newRate) {
        rate = Math.max(0, newRate);
        log.info("load rate set to {}/s", rate);
        // Wake the scheduler so a new rate applies now, not after the old gap.
        Thread t = scheduler;
        if (t != null) {
            LockSupport.unpark(t);
        }
    }

    public double rate() {
        return rate;
    }

    public int inFlight() {
        return inFlight.get();
    }

    public int queued() {
        return workers.getQueue().size();
    }

    private void schedule() {
        long next = System.nanoTime();
        double current = 0;
        while (!stopped) {
            double r = rate;
            if (r <= 0) {
                LockSupport.parkNanos(100_000_000L);
                current = 0;
                continue;
            }
            if (r != current) {
                // Restart the arrival clock when the rate changes (or load resumes).
                current = r;
                next = System.nanoTime();
            }
            next += (long) (-Math.log(1.0 - ThreadLocalRandom.current().nextDouble()) / r * 1e9);
            long now = System.nanoTime();
            if (next < now - 1_000_000_000L) {
                // Fell behind by more than a second (GC, CPU starvation): skip, don't burst.
                next = now;
            }
            boolean changed = false;
            for (long wait; (wait = next - System.nanoTime()) > 0 && !stopped; ) {
                LockSupport.parkNanos(wait);
                if (rate != current) {
                    changed = true;
                    break;
                }
            }
            if (!changed && !stopped) {
                dispatch();
            }
        }
    }

    private void dispatch() {
        double startMs = epochMs();
        long ms = ThreadLocalRandom.current().nextDouble() < props.tailProbability()
                ? props.tailMs() : props.latencyMs();
        try {
            workers.execute(() -> send(startMs, ms));
        } catch (RejectedExecutionException e) {
            // Every worker busy and the queue full: the consumer itself is overloaded.
            records.add(startMs, epochMs(), "", Outcome.OTHER);
        }
    }

    /** start is the arrival time, so time spent waiting for a worker counts as latency. */
    private void send(double startMs, long ms) {
        inFlight.incrementAndGet();
        String instance = "";
        Outcome outcome;
        try {
            ServiceInstance chosen = loadBalancer.choose(props.service());
            if (chosen == null) {
                outcome = Outcome.NO_INSTANCE;
            } else {
                instance = chosen.getHost() + ":" + chosen.getPort();
                http.get()
                        .uri("http://{host}:{port}/api/work?ms={ms}", chosen.getHost(), chosen.getPort(), ms)
                        .retrieve()
                        .body(String.class);
                outcome = Outcome.OK;
            }
        } catch (Exception e) {
            outcome = Outcome.of(e);
            if (outcome == Outcome.OTHER) {
                log.debug("request to {} failed", instance, e);
            }
        } finally {
            inFlight.decrementAndGet();
        }
        records.add(startMs, epochMs(), instance, outcome);
    }

    private static double epochMs() {
        Instant now = Instant.now();
        return now.getEpochSecond() * 1000.0 + now.getNano() / 1_000_000.0;
    }

    @PreDestroy
    void stop() {
        stopped = true;
        Thread t = scheduler;
        if (t != null) {
            LockSupport.unpark(t);
        }
        workers.shutdownNow();
    }
}
