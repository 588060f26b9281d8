package dev.prestop.lab.consumer;

import org.springframework.beans.factory.ListableBeanFactory;
import org.springframework.boot.actuate.cache.CachesEndpoint;
import org.springframework.cache.CacheManager;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;

/**
 * Lets /actuator/caches see Spring Cloud LoadBalancer's cache manager.
 *
 * <p>Spring Cloud declares its "caffeineLoadBalancerCacheManager" with
 * {@code @Bean(autowireCandidate = false)} so it never competes with the app's own
 * CacheManager, and Spring Boot 3.5's caches endpoint only collects autowire
 * candidates, so out of the box the endpoint shows no cache manager at all and the lab
 * could not evict the instance-list cache. This endpoint takes every CacheManager bean
 * (getBeansOfType ignores the autowire flag); Boot's own endpoint backs off
 * (@ConditionalOnMissingBean) and its web extension serves this one.
 */
@Configuration(proxyBeanMethods = false)
class CachesEndpointConfig {

    @Bean
    CachesEndpoint cachesEndpoint(ListableBeanFactory beanFactory) {
        return new CachesEndpoint(beanFactory.getBeansOfType(CacheManager.class));
    }
}
