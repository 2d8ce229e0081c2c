/*
 * Single purpose: run the KCL 3 MultiLangDaemon (amazon-kinesis-client-multilang) on a DynamoDB stream.
 *
 * The DynamoDB Streams Kinesis Adapter 2.x (KCL 3, AWS SDK v2) ships no MultiLangDaemon, and KCL's own
 * daemon builds a Kinesis scheduler. This main reads the same properties file as MultiLangDaemon (same keys,
 * parsed by KCL's own configurator), then builds the Scheduler through the adapter's
 * StreamsSchedulerFactory with the multilang record processor (which spawns `executableName`) wrapped so
 * the adapter accepts it. Extra keys, read here only:
 *   dynamoDBStreamsEndpoint  endpoint override for the DynamoDB Streams API (e.g. a moto server)
 *   dynamoDBEndpoint         (a KCL key) endpoint override for the lease/coordinator/worker-metrics tables
 * Arguments after the file's path, each key=value, set properties over the file's (an ECS task's command).
 * `streamName` holds the DynamoDB stream ARN. `metricsLevel = NONE` makes no CloudWatch client calls.
 * Each child is started by ChildProcessFactory: told the lease table (CDC_KCL_LEASE_TABLE), its stderr
 * the daemon's. A configuration error (a missing key, a CDC_KCL_LEASE_TABLE naming another table) exits 2.
 *
 * Thread-safety: main() runs once; the Scheduler owns its threads.
 */
package consumer.kcl;

import com.amazonaws.services.dynamodbv2.streamsadapter.AmazonDynamoDBStreamsAdapterClient;
import com.amazonaws.services.dynamodbv2.streamsadapter.StreamsSchedulerFactory;
import com.amazonaws.services.dynamodbv2.streamsadapter.polling.DynamoDBStreamsPollingConfig;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import software.amazon.awssdk.auth.credentials.AwsCredentialsProvider;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.cloudwatch.CloudWatchAsyncClient;
import software.amazon.awssdk.services.dynamodb.DynamoDbAsyncClient;
import software.amazon.awssdk.services.dynamodb.streams.DynamoDbStreamsClient;
import software.amazon.awssdk.services.dynamodb.streams.DynamoDbStreamsClientBuilder;
import software.amazon.kinesis.common.ConfigsBuilder;
import software.amazon.kinesis.common.InitialPositionInStream;
import software.amazon.kinesis.common.InitialPositionInStreamExtended;
import software.amazon.kinesis.coordinator.CoordinatorConfig;
import software.amazon.kinesis.coordinator.Scheduler;
import software.amazon.kinesis.leases.LeaseManagementConfig;
import software.amazon.kinesis.metrics.MetricsConfig;
import software.amazon.kinesis.metrics.MetricsLevel;
import software.amazon.kinesis.metrics.NullMetricsFactory;
import software.amazon.kinesis.multilang.MultiLangDaemonConfig;
import software.amazon.kinesis.multilang.config.BuilderDynaBean;
import software.amazon.kinesis.multilang.config.ConfigurationSettableUtils;
import software.amazon.kinesis.multilang.config.MultiLangDaemonConfiguration;
import software.amazon.kinesis.retrieval.RetrievalConfig;
import software.amazon.kinesis.retrieval.polling.PollingConfig;

public final class DynamoDBStreamsMultiLangDaemon {
    private static final Logger log = LoggerFactory.getLogger(DynamoDBStreamsMultiLangDaemon.class);

    static final String PROP_STREAMS_ENDPOINT = "dynamoDBStreamsEndpoint";
    static final String PROP_REGION = "regionName";
    static final String PROP_EXECUTABLE = "executableName";
    /** When shutdownGraceMillis is unset: inside Kubernetes' default 30 s grace, and long enough for a batch. */
    static final long DEFAULT_SHUTDOWN_GRACE_MILLIS = 25_000L;

    private DynamoDBStreamsMultiLangDaemon() {}

    public static void main(String[] args) {
        if (args.length < 1) {
            System.err.println("usage: DynamoDBStreamsMultiLangDaemon <kcl.properties> [key=value ...]");
            System.exit(2);
        }
        Scheduler scheduler;
        MultiLangDaemonConfig daemonConfig;
        try {
            Properties properties = withOverrides(loadProperties(args[0]), List.of(args).subList(1, args.length));
            daemonConfig = new MultiLangDaemonConfig(writeMerged(properties).toString());
            scheduler = buildScheduler(daemonConfig, properties, System.getenv());
        } catch (IllegalArgumentException e) {
            log.error("DynamoDB Streams MultiLangDaemon cannot start: {}", e.getMessage());
            System.exit(2);
            return;
        } catch (Throwable t) {
            log.error("DynamoDB Streams MultiLangDaemon failed to start", t);
            System.exit(1);
            return;
        }
        int exitCode = 1;
        try {
            addGracefulShutdownHook(scheduler, daemonConfig.getMultiLangDaemonConfiguration());
            exitCode = runUntilShutdown(scheduler, daemonConfig.getExecutorService());
        } catch (Throwable t) {
            log.error("DynamoDB Streams MultiLangDaemon stopped with an error", t);
        }
        System.exit(exitCode);
    }

    /** The table the KCL keeps its leases in: tableName when set, else applicationName (as KCL decides). */
    static String leaseTable(MultiLangDaemonConfiguration conf) {
        String table = conf.getTableName();
        return table != null && !table.isBlank() ? table.trim() : conf.getApplicationName();
    }

    /** Mirrors MultiLangDaemonConfiguration.resolvedConfiguration(), with the adapter's client and tracker. */
    static Scheduler buildScheduler(MultiLangDaemonConfig daemonConfig, Properties properties,
                                    Map<String, String> environment) {
        MultiLangDaemonConfiguration conf = daemonConfig.getMultiLangDaemonConfiguration();
        String streamArn = conf.getStreamName();
        ChildProcessFactory children = ChildProcessFactory.forLeaseTable(require(properties, PROP_EXECUTABLE),
                leaseTable(conf), environment, daemonConfig.getExecutorService(), conf);
        Region region = Region.of(require(properties, PROP_REGION));
        AwsCredentialsProvider credentials = conf.getKinesisCredentialsProvider().build(AwsCredentialsProvider.class);

        AmazonDynamoDBStreamsAdapterClient adapterClient = new AmazonDynamoDBStreamsAdapterClient(
                streamsClient(region, credentials, properties.getProperty(PROP_STREAMS_ENDPOINT)), region);
        DynamoDbAsyncClient dynamoDb = buildClient(conf, conf.getDynamoDbClient(),
                conf.getDynamoDBCredentialsProvider(), credentials, DynamoDbAsyncClient.class);
        CloudWatchAsyncClient cloudWatch = buildClient(conf, conf.getCloudWatchClient(),
                conf.getCloudWatchCredentialsProvider(), credentials, CloudWatchAsyncClient.class);

        InitialPositionInStreamExtended position = conf.getInitialPositionInStreamExtended() != null
                ? conf.getInitialPositionInStreamExtended()
                : InitialPositionInStreamExtended.newInitialPosition(InitialPositionInStream.LATEST);
        ConfigsBuilder configs = new ConfigsBuilder(
                StreamsSchedulerFactory.createSingleStreamTracker(streamArn, position),
                conf.getApplicationName(), adapterClient, dynamoDb, cloudWatch, conf.getWorkerIdentifier(),
                new DynamoDBStreamsMultiLangProcessorFactory(children));

        Map<Class<?>, Object> targets = new HashMap<>();
        targets.put(ConfigsBuilder.class, configs);
        ConfigurationSettableUtils.resolveFields(conf, targets, Set.of(ConfigsBuilder.class), Set.of(PollingConfig.class));

        CoordinatorConfig coordinator = configs.coordinatorConfig();
        LeaseManagementConfig leases = configs.leaseManagementConfig();
        MetricsConfig metrics = configs.metricsConfig();
        RetrievalConfig retrieval = configs.retrievalConfig();
        List.of(configs.checkpointConfig(), coordinator, leases, configs.lifecycleConfig(), metrics,
                configs.processorConfig(), retrieval).forEach(c -> targets.put(c.getClass(), c));

        ConfigurationSettableUtils.resolveFields(conf.getCoordinatorStateTableConfigBean(),
                coordinator.coordinatorStateTableConfig());
        ConfigurationSettableUtils.resolveFields(conf.getGracefulLeaseHandoffConfigBean(),
                leases.gracefulLeaseHandoffConfig());
        ConfigurationSettableUtils.resolveFields(conf.getWorkerUtilizationAwareAssignmentConfigBean(),
                leases.workerUtilizationAwareAssignmentConfig());
        ConfigurationSettableUtils.resolveFields(conf.getWorkerMetricStatsTableConfigBean(),
                leases.workerUtilizationAwareAssignmentConfig().workerMetricsTableConfig());

        // The adapter only reads through its own polling config (GetRecords on DynamoDB Streams; no fan-out).
        DynamoDBStreamsPollingConfig polling = new DynamoDBStreamsPollingConfig(streamArn, adapterClient);
        if (conf.getPollingConfig().getIdleTimeBetweenReadsInMillis() > 0) {
            polling.idleTimeBetweenReadsInMillis(conf.getPollingConfig().getIdleTimeBetweenReadsInMillis());
        }
        ConfigurationSettableUtils.resolveFields(conf.getPollingConfig(), Map.of(PollingConfig.class, polling), null, null);
        retrieval.retrievalSpecificConfig(polling);

        ConfigurationSettableUtils.resolveFields(conf, targets, null, Set.of(ConfigsBuilder.class, PollingConfig.class));
        // Adapter 2.0.1 sets shardSyncIntervalMillis(0) only after its lease-management factory has copied
        // the value, so the first shard sync would sleep the 60 s default before the worker starts.
        leases.shardSyncIntervalMillis(0);
        if (metrics.metricsLevel() == MetricsLevel.NONE) {
            metrics.metricsFactory(new NullMetricsFactory()); // no CloudWatch client is ever called
        }
        log.info("Consuming DynamoDB stream {} as application {} (lease table {}), worker {}, children: {}",
                streamArn, conf.getApplicationName(), leases.tableName(), conf.getWorkerIdentifier(),
                children.command());
        return StreamsSchedulerFactory.createScheduler(configs.checkpointConfig(), coordinator, leases,
                configs.lifecycleConfig(), metrics, configs.processorConfig(), retrieval, adapterClient);
    }

    private static DynamoDbStreamsClient streamsClient(Region region, AwsCredentialsProvider credentials,
                                                       String endpoint) {
        DynamoDbStreamsClientBuilder builder = DynamoDbStreamsClient.builder()
                .region(region).credentialsProvider(credentials);
        if (endpoint != null && !endpoint.isBlank()) {
            builder.endpointOverride(URI.create(endpoint.trim()));
        }
        return builder.build();
    }

    /** Builds a client from KCL's own client bean (region, endpointOverride, ...), defaulting its credentials. */
    private static <T> T buildClient(MultiLangDaemonConfiguration conf, BuilderDynaBean client,
                                     BuilderDynaBean ownCredentials, AwsCredentialsProvider fallback, Class<T> type) {
        AwsCredentialsProvider credentials = ownCredentials.isDirty()
                ? ownCredentials.build(AwsCredentialsProvider.class) : fallback;
        try {
            conf.getUtilsBean().setProperty(client, "credentialsProvider", credentials);
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException("cannot set credentials on " + type.getSimpleName(), e);
        }
        return client.build(type);
    }

    private static void addGracefulShutdownHook(Scheduler scheduler, MultiLangDaemonConfiguration conf) {
        long graceMillis = conf.getShutdownGraceMillis() > 0 ? conf.getShutdownGraceMillis()
                : DEFAULT_SHUTDOWN_GRACE_MILLIS;
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            log.info("Termination requested; checkpointing and releasing leases (grace {} ms)", graceMillis);
            try {
                scheduler.startGracefulShutdown().get(graceMillis, TimeUnit.MILLISECONDS);
            } catch (Exception e) {
                log.error("Graceful shutdown did not complete", e);
            }
        }, "graceful-shutdown"));
    }

    private static int runUntilShutdown(Scheduler scheduler, ExecutorService executor) throws Exception {
        Future<Integer> run = executor.submit(() -> {
            try {
                scheduler.run();
                return 0;
            } catch (Throwable t) {
                log.error("Scheduler stopped with an error", t);
                return 1;
            }
        });
        return run.get();
    }

    /**
     * The file's properties with each {@code key=value} argument set over them: where no file can be
     * mounted (an ECS task), the task's command names the stream and the application.
     */
    static Properties withOverrides(Properties file, List<String> overrides) {
        Properties merged = new Properties();
        merged.putAll(file);
        for (String override : overrides) {
            int equals = override.indexOf('=');
            if (equals <= 0) {
                throw new IllegalArgumentException("argument '" + override + "' is not key=value: after the "
                        + "properties file, each argument sets one property (for example applicationName=orders-kcl)");
            }
            merged.setProperty(override.substring(0, equals).trim(), override.substring(equals + 1).trim());
        }
        return merged;
    }

    /** KCL's configurator reads a file: the merged properties go to one in the temporary directory. */
    private static Path writeMerged(Properties properties) throws IOException {
        Path merged = Files.createTempFile("kcl-daemon-", ".properties");
        merged.toFile().deleteOnExit();
        try (OutputStream out = Files.newOutputStream(merged)) {
            properties.store(out, "the properties file with the command line's key=value arguments set over it");
        }
        return merged;
    }

    private static Properties loadProperties(String path) throws IOException {
        Properties properties = new Properties();
        try (InputStream in = new FileInputStream(path)) {
            properties.load(in);
        }
        return properties;
    }

    private static String require(Properties properties, String key) {
        String value = properties.getProperty(key);
        if (value == null || value.isBlank()) {
            throw new IllegalArgumentException("missing property " + key);
        }
        return value.trim();
    }
}
