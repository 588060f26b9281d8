package dev.prestop.lab.eureka;

import org.springframework.beans.factory.annotation.Value;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.context.annotation.Profile;
import org.springframework.security.config.Customizer;
import org.springframework.security.config.annotation.web.builders.HttpSecurity;
import org.springframework.security.config.annotation.web.configuration.EnableWebSecurity;
import org.springframework.security.core.userdetails.User;
import org.springframework.security.provisioning.InMemoryUserDetailsManager;
import org.springframework.security.web.SecurityFilterChain;

/**
 * HTTP Basic auth for the whole server, only with the "secure" profile.
 *
 * <p>Without the profile Spring Boot's security auto-configuration is excluded in
 * application.yml, so the server is as open as a stock Eureka server. With it, this
 * class brings its own filter chain and user (lab.user / lab.password), so it does not
 * depend on that auto-configuration.
 */
@Configuration(proxyBeanMethods = false)
@Profile("secure")
@EnableWebSecurity
public class SecureProfileConfig {

    @Bean
    SecurityFilterChain eurekaSecurity(HttpSecurity http) throws Exception {
        http.authorizeHttpRequests(auth -> auth.anyRequest().authenticated())
                .httpBasic(Customizer.withDefaults())
                // Eureka clients and peers PUT/POST/DELETE without a CSRF token; the
                // Spring Cloud docs advise ignoring CSRF for /eureka/** only.
                .csrf(csrf -> csrf.ignoringRequestMatchers("/eureka/**"));
        return http.build();
    }

    @Bean
    InMemoryUserDetailsManager eurekaUsers(@Value("${lab.user}") String user,
                                           @Value("${lab.password}") String password) {
        // {noop}: a lab password given on the command line, no need to hash it.
        return new InMemoryUserDetailsManager(
                User.withUsername(user).password("{noop}" + password).roles("EUREKA").build());
    }
}
