package dev.prestop.lab.nacos;

import com.alibaba.nacos.NacosServerBasicApplication;
import com.alibaba.nacos.NacosServerWebApplication;
import com.alibaba.nacos.console.NacosConsole;
import com.alibaba.nacos.core.listener.startup.NacosStartUp;
import com.alibaba.nacos.core.listener.startup.NacosStartUpManager;
import com.alibaba.nacos.sys.env.Constants;
import com.alibaba.nacos.sys.env.DeploymentType;
import com.alibaba.nacos.sys.env.EnvUtil;
import org.springframework.boot.WebApplicationType;
import org.springframework.boot.builder.SpringApplicationBuilder;
import org.springframework.context.ConfigurableApplicationContext;
import org.springframework.jmx.export.MBeanExporter;
import org.springframework.jmx.support.RegistrationPolicy;

/**
 * Starts a real Nacos 3.1.0 server for the prestop lab.
 *
 * <p>Stands in for the official {@code bootstrap} module (class {@code NacosBootstrap}), which is not published on
 * Maven Central. It follows the same start-up order: the non-web core context ({@link NacosServerBasicApplication}),
 * then, as its children, the server web context ({@link NacosServerWebApplication}: naming, config, the
 * {@code /nacos/v3/admin/**} and {@code /nacos/v3/client/**} APIs on {@code nacos.server.main.port}) and, in the
 * default {@code merged} deployment, the console context ({@link NacosConsole} on {@code nacos.console.port}).
 * Each phase is announced to Nacos's {@link NacosStartUpManager} first, as the official bootstrap does. The MCP
 * registry context (off by default in Nacos) is not offered. All Nacos code comes from the
 * {@code io.github.pig-mesh.nacos} 3.1.0-bugfix jars.
 *
 * <p>{@code -Dnacos.deployment.type=server} starts without the console. Standalone mode (embedded Derby) is the
 * default unless {@code -Dnacos.standalone=false}. Ports, nacos.home, addresses and auth keys come from the
 * command line; see lab/java/NACOS.md.
 */
public final class Nacos3Lab {

    private Nacos3Lab() {
    }

    public static void main(String[] args) {
        // Nacos reads these as JVM system properties (EnvUtil), not from the Spring environment.
        if (System.getProperty("nacos.standalone") == null) {
            System.setProperty("nacos.standalone", "true");
        }
        if (System.getProperty("nacos.home") == null) {
            throw new IllegalStateException("set -Dnacos.home=DIR (Derby data, logs and conf go there)");
        }
        String type = System.getProperty(Constants.NACOS_DEPLOYMENT_TYPE, Constants.NACOS_DEPLOYMENT_TYPE_MERGED);
        DeploymentType deploymentType = DeploymentType.getType(type);
        EnvUtil.setDeploymentType(deploymentType);
        ConfigurableApplicationContext core;
        switch (deploymentType) {
            case MERGED:
                core = startCore(args);
                startChild(NacosStartUp.WEB_START_UP_PHASE, NacosServerWebApplication.class, core, args);
                startChild(NacosStartUp.CONSOLE_START_UP_PHASE, NacosConsole.class, core, args);
                break;
            case SERVER:
                core = startCore(args);
                startChild(NacosStartUp.WEB_START_UP_PHASE, NacosServerWebApplication.class, core, args);
                break;
            default:
                throw new IllegalArgumentException("this lab server supports nacos.deployment.type merged or server, not "
                        + type);
        }
    }

    private static ConfigurableApplicationContext startCore(String[] args) {
        NacosStartUpManager.start(NacosStartUp.CORE_START_UP_PHASE);
        ConfigurableApplicationContext core = new SpringApplicationBuilder(NacosServerBasicApplication.class)
                .web(WebApplicationType.NONE).run(args);
        if (core.getEnvironment().getProperty("spring.jmx.enabled", Boolean.class, false)) {
            // The child contexts export the same MBeans again; let the core's exporter ignore duplicates.
            core.getBean(MBeanExporter.class).setRegistrationPolicy(RegistrationPolicy.IGNORE_EXISTING);
        }
        return core;
    }

    private static ConfigurableApplicationContext startChild(String phase, Class<?> application,
            ConfigurableApplicationContext core, String[] args) {
        NacosStartUpManager.start(phase);
        return new SpringApplicationBuilder(application).parent(core).run(args);
    }
}
