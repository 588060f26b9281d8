package dev.prestop.lab.provider;

import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;

/**
 * The service the lab rolls: a Tomcat app that registers in Nacos or Eureka (chosen by
 * the nacos / eureka profile), answers GET /api/work and shuts down gracefully.
 */
@SpringBootApplication
public class ProviderApplication {

    public static void main(String[] args) {
        SpringApplication.run(ProviderApplication.class, args);
    }
}
