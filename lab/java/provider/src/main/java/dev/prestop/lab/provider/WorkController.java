package dev.prestop.lab.provider;

import java.util.Map;

import org.springframework.beans.factory.annotation.Value;
import org.springframework.boot.web.context.WebServerInitializedEvent;
import org.springframework.context.event.EventListener;
import org.springframework.http.MediaType;
import org.springframework.web.bind.annotation.GetMapping;
import org.springframework.web.bind.annotation.RequestParam;
import org.springframework.web.bind.annotation.RestController;

/** The business endpoint: sleep as long as asked and say who answered. */
@RestController
public class WorkController {

    private final ColdCache coldCache;
    private final String ip;
    private volatile String instance;

    public WorkController(ColdCache coldCache, @Value("${lab.ip:127.0.0.1}") String ip) {
        this.coldCache = coldCache;
        this.ip = ip;
    }

    // The real port is known only once Tomcat has bound it.
    @EventListener
    void onWebServer(WebServerInitializedEvent event) {
        this.instance = ip + ":" + event.getWebServer().getPort();
    }

    // JSON explicitly: the Eureka client puts Jackson's XML module on the class path.
    @GetMapping(path = "/api/work", produces = MediaType.APPLICATION_JSON_VALUE)
    public Map<String, Object> work(@RequestParam(defaultValue = "0") long ms) throws InterruptedException {
        coldCache.ensureBuilt();
        if (ms > 0) {
            Thread.sleep(ms);
        }
        return Map.of("instance", instance, "ms", ms);
    }
}
