package dev.prestop.lab.consumer;

import com.alibaba.cloud.nacos.NacosDiscoveryProperties;
import com.alibaba.cloud.nacos.NacosServiceManager;
import com.alibaba.nacos.api.exception.NacosException;

import org.springframework.beans.factory.ObjectProvider;
import org.springframework.boot.context.event.ApplicationReadyEvent;
import org.springframework.context.annotation.Configuration;
import org.springframework.context.event.EventListener;

/**
 * The small bean a consumer adds so that {@code /actuator/nacosdiscovery} shows what its Nacos
 * client holds for the service it calls.
 *
 * <p>Spring Cloud Alibaba's endpoint lists only the services subscribed WITH a listener
 * ({@code NamingService.getSubscribeServices()}); the discovery client subscribes without one,
 * so out of the box the endpoint shows no service and no host. A no-op listener is enough: the
 * Nacos client keeps the pushed list anyway, the listener only makes the subscription visible.
 * On by default here; {@code --lab.subscribe-listener=false} plays a stock consumer. Both beans
 * exist only with Nacos discovery on (the eureka profile has neither).
 */
@Configuration(proxyBeanMethods = false)
class SubscribeListenerConfig {

    private static final com.alibaba.nacos.api.naming.listener.EventListener NO_OP = event -> { };

    private final ObjectProvider<NacosServiceManager> nacos;
    private final ObjectProvider<NacosDiscoveryProperties> discovery;
    private final LabProperties lab;

    SubscribeListenerConfig(ObjectProvider<NacosServiceManager> nacos,
                            ObjectProvider<NacosDiscoveryProperties> discovery, LabProperties lab) {
        this.nacos = nacos;
        this.discovery = discovery;
        this.lab = lab;
    }

    @EventListener(ApplicationReadyEvent.class)
    void subscribe() throws NacosException {
        NacosServiceManager manager = nacos.getIfAvailable();
        NacosDiscoveryProperties properties = discovery.getIfAvailable();
        if (lab.subscribeListener() && manager != null && properties != null) {
            manager.getNamingService().subscribe(lab.service(), properties.getGroup(), NO_OP);
        }
    }
}
