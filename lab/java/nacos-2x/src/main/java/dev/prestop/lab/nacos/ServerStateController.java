package dev.prestop.lab.nacos;

import com.alibaba.nacos.sys.module.ModuleState;
import com.alibaba.nacos.sys.module.ModuleStateHolder;
import org.springframework.http.ResponseEntity;
import org.springframework.web.bind.annotation.GetMapping;
import org.springframework.web.bind.annotation.RequestMapping;
import org.springframework.web.bind.annotation.RestController;

import java.util.HashMap;
import java.util.Map;

/**
 * Stands in for {@code GET /nacos/v1/console/server/state} of the unpublished 2.x console module
 * ({@code com.alibaba.nacos.console.controller.ServerStateController}, 2.3.1).
 *
 * <p>Answers the same way: one flat JSON object merging the states of every Nacos module
 * ({@link ModuleStateHolder}, filled from the {@code ModuleStateBuilder} services in the Nacos jars), values as
 * strings, e.g. {@code "version":"2.3.1"}, {@code "standalone_mode":"standalone"}, {@code "auth_enabled":"true"}.
 * prestop-agent reads {@code version} from it to tell a 2.x server. The path is in Nacos's default
 * {@code nacos.security.ignore.urls} ({@code /v1/console/server/**}), so no token is needed, as in Nacos.
 * The console's announcement and guide endpoints (UI texts) are left out.
 */
@RestController
@RequestMapping("/v1/console/server")
public class ServerStateController {

    @GetMapping("/state")
    public ResponseEntity<Map<String, String>> serverState() {
        Map<String, String> state = new HashMap<>(32);
        for (ModuleState module : ModuleStateHolder.getInstance().getAllModuleStates()) {
            module.getStates().forEach((key, value) -> state.put(key, value == null ? null : value.toString()));
        }
        return ResponseEntity.ok().body(state);
    }
}
