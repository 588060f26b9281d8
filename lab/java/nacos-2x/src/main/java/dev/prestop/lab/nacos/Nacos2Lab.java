package dev.prestop.lab.nacos;

import com.alibaba.nacos.sys.filter.NacosTypeExcludeFilter;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.AutoConfigurationExcludeFilter;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.boot.context.TypeExcludeFilter;
import org.springframework.boot.web.servlet.ServletComponentScan;
import org.springframework.context.annotation.ComponentScan;
import org.springframework.context.annotation.FilterType;
import org.springframework.scheduling.annotation.EnableScheduling;

/**
 * Starts a real Nacos 2.3.1 server for the prestop lab.
 *
 * <p>Stands in for the main class of the official {@code nacos-console} module ({@code com.alibaba.nacos.Nacos}),
 * which no group publishes on Maven Central for 2.x. Like it, this scans every {@code com.alibaba.nacos} package
 * with Nacos's own module filter ({@link NacosTypeExcludeFilter}: config, naming, istio, ... switched by
 * {@code nacos.functionMode} and friends), picks up Nacos's {@code @WebFilter}/{@code @WebServlet} classes and
 * enables scheduling. All Nacos server code comes from the {@code vip.xiaonuo.nacos} 2.3.1 jars.
 *
 * <p>Defaults that differ from a plain Nacos start: standalone mode (embedded Derby) unless
 * {@code -Dnacos.standalone=false} is given. Everything else (port, nacos.home, addresses, auth keys) is set on the
 * command line; see lab/java/NACOS.md.
 */
@SpringBootApplication
@ComponentScan(basePackages = {"com.alibaba.nacos", "dev.prestop.lab.nacos"}, excludeFilters = {
        @ComponentScan.Filter(type = FilterType.CUSTOM, classes = {NacosTypeExcludeFilter.class}),
        @ComponentScan.Filter(type = FilterType.CUSTOM, classes = {TypeExcludeFilter.class}),
        @ComponentScan.Filter(type = FilterType.CUSTOM, classes = {AutoConfigurationExcludeFilter.class})})
@ServletComponentScan(basePackages = "com.alibaba.nacos")
@EnableScheduling
public class Nacos2Lab {

    public static void main(String[] args) {
        // Nacos reads these as JVM system properties (EnvUtil), not from the Spring environment.
        if (System.getProperty("nacos.standalone") == null) {
            System.setProperty("nacos.standalone", "true");
        }
        if (System.getProperty("nacos.home") == null) {
            throw new IllegalStateException("set -Dnacos.home=DIR (Derby data, logs and conf go there)");
        }
        SpringApplication.run(Nacos2Lab.class, args);
    }
}
