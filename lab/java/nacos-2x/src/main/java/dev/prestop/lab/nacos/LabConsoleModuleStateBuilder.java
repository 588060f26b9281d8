package dev.prestop.lab.nacos;

import com.alibaba.nacos.sys.module.ModuleState;
import com.alibaba.nacos.sys.module.ModuleStateBuilder;

/**
 * Stands in for the 2.x console module's {@code ConsoleModuleStateBuilder}: the "console" module state with
 * {@code console_ui_enabled}. This lab server ships no console UI, so it is always false.
 */
public class LabConsoleModuleStateBuilder implements ModuleStateBuilder {

    @Override
    public ModuleState build() {
        ModuleState result = new ModuleState("console");
        result.newState("console_ui_enabled", false);
        return result;
    }
}
