package dev.prestop.lab.nacos;

import com.alibaba.nacos.core.code.ControllerMethodsCache;
import org.springframework.stereotype.Component;

import javax.annotation.PostConstruct;

/**
 * Stands in for the part of the unpublished 2.x console module's {@code ConsoleConfig} that the server needs.
 *
 * <p>Nacos's auth filter and parameter-check filter look the handler method of a request up in
 * {@link ControllerMethodsCache}; a request whose method is not cached passes them unchecked. The official console
 * registers the core, naming and config controller packages at start-up, so this does the same; without it
 * {@code nacos.core.auth.enabled=true} would not protect /v1/ns, /v2/ns, /v1/cs ... (the auth plugin registers its
 * own controllers). The console UI, its CORS and XSS filters are not part of this lab server.
 */
@Component
public class LabConsoleConfig {

    private final ControllerMethodsCache methodsCache;

    public LabConsoleConfig(ControllerMethodsCache methodsCache) {
        this.methodsCache = methodsCache;
    }

    @PostConstruct
    public void registerControllerPackages() {
        methodsCache.initClassMethod("com.alibaba.nacos.core.controller");
        methodsCache.initClassMethod("com.alibaba.nacos.naming.controllers");
        methodsCache.initClassMethod("com.alibaba.nacos.config.server.controller");
        methodsCache.initClassMethod("dev.prestop.lab.nacos");
    }
}
