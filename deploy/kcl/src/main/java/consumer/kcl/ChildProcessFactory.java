/*
 * Single purpose: start one record-processor child per shard, told its lease table and logging for itself.
 *
 * Two differences from KCL's MultiLangRecordProcessorFactory, both about the child process:
 *   - its environment carries CDC_KCL_LEASE_TABLE = the daemon's lease table, so the lease table is
 *     named once (applicationName, or tableName) and the processor cannot look in another one;
 *   - its stderr is the daemon's own stderr, not a pipe the daemon logs line by line at ERROR: the
 *     child's JSON log lines reach the container's log as written, each at its own level.
 * The command is executableName split on spaces, as KCL does (no shell).
 *
 * Thread-safety: immutable; shardRecordProcessor() may be called from any thread.
 */
package consumer.kcl;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import software.amazon.kinesis.multilang.ChildProcessRecordProcessors;
import software.amazon.kinesis.multilang.config.MultiLangDaemonConfiguration;
import software.amazon.kinesis.processor.ShardRecordProcessor;
import software.amazon.kinesis.processor.ShardRecordProcessorFactory;

public final class ChildProcessFactory implements ShardRecordProcessorFactory {
    /** The variable through which `consumer kcl-processor` learns where the KCL keeps its leases. */
    static final String LEASE_TABLE_VARIABLE = "CDC_KCL_LEASE_TABLE";

    private final List<String> command;
    private final Map<String, String> environment;
    private final ExecutorService executor;
    private final MultiLangDaemonConfiguration configuration;
    private final ObjectMapper mapper = new ObjectMapper();

    ChildProcessFactory(List<String> command, Map<String, String> environment, ExecutorService executor,
                        MultiLangDaemonConfiguration configuration) {
        this.command = List.copyOf(command);
        this.environment = Map.copyOf(environment);
        this.executor = executor;
        this.configuration = configuration;
    }

    /**
     * The factory for this daemon's children. Refuses a CDC_KCL_LEASE_TABLE inherited from the daemon's
     * environment that names another table: the children would keep their version clock where the KCL
     * keeps no leases, and every child would exit at its first batch.
     */
    static ChildProcessFactory forLeaseTable(String executableName, String leaseTable, Map<String, String> inherited,
                                             ExecutorService executor, MultiLangDaemonConfiguration configuration) {
        String declared = inherited.get(LEASE_TABLE_VARIABLE);
        if (declared != null && !declared.isBlank() && !declared.trim().equals(leaseTable)) {
            throw new IllegalArgumentException(LEASE_TABLE_VARIABLE + "=" + declared.trim()
                    + " in the daemon's environment, but its lease table is " + leaseTable
                    + " (applicationName): remove " + LEASE_TABLE_VARIABLE
                    + ", the launcher passes the lease table to each child");
        }
        List<String> command = List.of(executableName.trim().split(" +"));
        return new ChildProcessFactory(command, Map.of(LEASE_TABLE_VARIABLE, leaseTable), executor, configuration);
    }

    List<String> command() {
        return command;
    }

    /** The ProcessBuilder of one child: not started here (the multilang processor starts it at initialize). */
    ProcessBuilder child() {
        ProcessBuilder child = new ProcessBuilder(command);
        child.environment().putAll(environment);
        child.redirectError(ProcessBuilder.Redirect.INHERIT);
        return child;
    }

    @Override
    public ShardRecordProcessor shardRecordProcessor() {
        return ChildProcessRecordProcessors.speakingTo(child(), executor, mapper, configuration);
    }
}
