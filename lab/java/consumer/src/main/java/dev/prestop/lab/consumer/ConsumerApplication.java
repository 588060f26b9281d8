package dev.prestop.lab.consumer;

import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.boot.context.properties.ConfigurationPropertiesScan;

/**
 * The lab's client side: it sends a Poisson stream of requests to the service
 * "provider", picking each instance through Spring Cloud LoadBalancer (and so through
 * its cached instance list, the staleness the agent has to wait out), and keeps a
 * record of every request for the lab driver.
 */
@SpringBootApplication
@ConfigurationPropertiesScan
public class ConsumerApplication {

    public static void main(String[] args) {
        SpringApplication.run(ConsumerApplication.class, args);
    }
}
