package dev.prestop.lab.consumer;

import org.springframework.boot.context.properties.ConfigurationProperties;

/**
 * The load the consumer drives (prefix "lab").
 *
 * @param service           the service to call
 * @param rate              requests per second, Poisson arrivals; 0 = idle
 * @param latencyMs         the ms passed to /api/work
 * @param tailProbability   chance that a request asks for tailMs instead
 * @param tailMs            the ms of a tail request
 * @param timeoutMs         connect and read timeout of one request
 * @param workers           threads that send requests (bounds the requests in flight)
 * @param queue             arrivals that may wait for a worker before they are dropped
 * @param maxRecords        records kept in memory; later requests are counted in /lab/stats only
 * @param subscribeListener subscribe the service with a no-op listener at start-up, so that
 *                          /actuator/nacosdiscovery lists its hosts (default true)
 */
@ConfigurationProperties("lab")
public record LabProperties(
        String service,
        double rate,
        long latencyMs,
        double tailProbability,
        long tailMs,
        long timeoutMs,
        int workers,
        int queue,
        int maxRecords,
        Boolean subscribeListener) {

    public LabProperties {
        if (service == null || service.isBlank()) {
            service = "provider";
        }
        if (timeoutMs <= 0) {
            timeoutMs = 2000;
        }
        if (workers <= 0) {
            workers = 64;
        }
        if (queue <= 0) {
            queue = 10_000;
        }
        if (maxRecords <= 0) {
            maxRecords = 2_000_000;
        }
        if (subscribeListener == null) {
            subscribeListener = Boolean.TRUE;
        }
    }
}
