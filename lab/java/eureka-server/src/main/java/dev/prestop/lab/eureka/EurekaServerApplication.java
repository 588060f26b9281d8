package dev.prestop.lab.eureka;

import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.cloud.netflix.eureka.server.EnableEurekaServer;

/**
 * A plain Eureka server. The lab runs two of these on loopback, each pointing its
 * defaultZone at the other, so registrations and status changes replicate the way
 * they do between the peers of a real cluster.
 */
@SpringBootApplication
@EnableEurekaServer
public class EurekaServerApplication {

    public static void main(String[] args) {
        SpringApplication.run(EurekaServerApplication.class, args);
    }
}
