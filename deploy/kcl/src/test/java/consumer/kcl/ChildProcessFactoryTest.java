/*
 * The child must be told the daemon's lease table (else it keeps its version clock in a table the KCL
 * does not use, and exits at its first batch), and its log lines must reach the container's log as
 * written, not re-logged by the daemon at ERROR.
 */
package consumer.kcl;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class ChildProcessFactoryTest {

    private static ChildProcessFactory factory(Map<String, String> inherited) {
        return ChildProcessFactory.forLeaseTable(" /opt/venv/bin/consumer  kcl-processor ", "orders-kcl", inherited,
                null, null);
    }

    @Test
    void theChildIsToldTheLeaseTableAndWritesItsOwnStderr() {
        ProcessBuilder child = factory(Map.of()).child();

        assertEquals(List.of("/opt/venv/bin/consumer", "kcl-processor"), child.command());
        assertEquals("orders-kcl", child.environment().get("CDC_KCL_LEASE_TABLE"));
        assertEquals(ProcessBuilder.Redirect.INHERIT, child.redirectError());
        assertEquals(ProcessBuilder.Redirect.PIPE, child.redirectOutput()); // the protocol's channel
        assertEquals(ProcessBuilder.Redirect.PIPE, child.redirectInput());
    }

    @Test
    void theSameLeaseTableInTheDaemonsEnvironmentIsAccepted() {
        ProcessBuilder child = factory(Map.of("CDC_KCL_LEASE_TABLE", "orders-kcl")).child();

        assertEquals("orders-kcl", child.environment().get("CDC_KCL_LEASE_TABLE"));
    }

    @Test
    void anotherLeaseTableInTheDaemonsEnvironmentIsRefusedWithBothNames() {
        IllegalArgumentException refused = assertThrows(IllegalArgumentException.class,
                () -> factory(Map.of("CDC_KCL_LEASE_TABLE", "orders-leases")));

        assertTrue(refused.getMessage().contains("orders-leases"), refused.getMessage());
        assertTrue(refused.getMessage().contains("orders-kcl"), refused.getMessage());
        assertTrue(refused.getMessage().contains("remove CDC_KCL_LEASE_TABLE"), refused.getMessage());
    }
}
