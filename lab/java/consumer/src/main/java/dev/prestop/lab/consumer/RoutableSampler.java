package dev.prestop.lab.consumer;

import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.beans.factory.DisposableBean;
import org.springframework.beans.factory.ListableBeanFactory;
import org.springframework.beans.factory.SmartInitializingSingleton;
import org.springframework.cache.Cache;
import org.springframework.cache.CacheManager;
import org.springframework.cloud.client.ServiceInstance;
import org.springframework.cloud.client.discovery.DiscoveryClient;
import org.springframework.stereotype.Component;

/**
 * When each instance was last in the list the load balancer would route by, sampled every 50 ms.
 *
 * <p>The list is Spring Cloud LoadBalancer's cache entry for the service
 * ({@code CachingServiceInstanceListSupplierCache}, key = service id), read with
 * {@link Cache#get(Object)}, which never loads it (the Caffeine cache there has no loader), on
 * every CacheManager bean (getBeansOfType: see {@link CachesEndpointConfig}). While no entry
 * exists the next request would load what the DiscoveryClient returns, so that list counts.
 * The lab's lower bound uses it: a pod cannot be stopped safely before every consumer's routing
 * list has let it go, even when no request happened to be sent to it in the meantime.
 */
@Component
class RoutableSampler implements SmartInitializingSingleton, DisposableBean {

    static final String CACHE = "CachingServiceInstanceListSupplierCache";
    private static final Logger log = LoggerFactory.getLogger(RoutableSampler.class);

    private final ListableBeanFactory beans;
    private final DiscoveryClient discovery;
    private final String service;
    private final Map<String, Long> lastRoutable = new ConcurrentHashMap<>();
    private final ScheduledExecutorService timer = Executors.newSingleThreadScheduledExecutor(r -> {
        Thread t = new Thread(r, "routable-sampler");
        t.setDaemon(true);
        return t;
    });
    private volatile long sampledAt;

    RoutableSampler(ListableBeanFactory beans, DiscoveryClient discovery, LabProperties lab) {
        this.beans = beans;
        this.discovery = discovery;
        this.service = lab.service();
    }

    @Override
    public void afterSingletonsInstantiated() {
        timer.scheduleWithFixedDelay(this::sampleSafely, 0, 50, TimeUnit.MILLISECONDS);
    }

    @Override
    public void destroy() {
        timer.shutdownNow();
    }

    private void sampleSafely() {
        try {
            sample();
        } catch (RuntimeException e) {
            log.debug("routable sample failed", e); // the next tick tries again
        }
    }

    private void sample() {
        List<?> routed = null;
        for (CacheManager manager : beans.getBeansOfType(CacheManager.class).values()) {
            Cache cache = manager.getCache(CACHE);
            Cache.ValueWrapper entry = cache == null ? null : cache.get(service);
            // An empty list counts as a miss there too (CachingServiceInstanceListSupplier).
            if (entry != null && entry.get() instanceof List<?> list && !list.isEmpty()) {
                routed = list;
                break;
            }
        }
        if (routed == null) {
            routed = discovery.getInstances(service);
        }
        long now = System.currentTimeMillis();
        for (Object item : routed) {
            if (item instanceof ServiceInstance instance) {
                lastRoutable.put(instance.getHost() + ":" + instance.getPort(), now);
            }
        }
        sampledAt = now;
    }

    /** {"sampledAt": epoch ms, "instances": {"ip:port": epoch ms last seen routable}}. */
    Map<String, Object> snapshot() {
        return Map.of("sampledAt", sampledAt, "instances", new TreeMap<>(lastRoutable));
    }
}
