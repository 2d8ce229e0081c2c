/*
 * Where no properties file can be mounted (an ECS task), the command line names the stream and the
 * application: each key=value argument must win over the file, and a malformed one must stop the
 * daemon with a message saying what the argument should be.
 */
package consumer.kcl;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Properties;
import org.junit.jupiter.api.Test;

class DaemonPropertiesTest {

    private static Properties file() {
        Properties file = new Properties();
        file.setProperty("applicationName", "items-to-opensearch");
        file.setProperty("metricsLevel", "SUMMARY");
        return file;
    }

    @Test
    void argumentsSetPropertiesOverTheFile() {
        Properties merged = DynamoDBStreamsMultiLangDaemon.withOverrides(file(),
                List.of("applicationName=orders-kcl", "streamName=arn:aws:dynamodb:eu-west-1:1:table/o/stream/x=y"));

        assertEquals("orders-kcl", merged.getProperty("applicationName"));
        assertEquals("arn:aws:dynamodb:eu-west-1:1:table/o/stream/x=y", merged.getProperty("streamName"));
        assertEquals("SUMMARY", merged.getProperty("metricsLevel"));
        assertEquals("items-to-opensearch", file().getProperty("applicationName"));
    }

    @Test
    void anArgumentThatIsNotKeyEqualsValueIsRefused() {
        IllegalArgumentException refused = assertThrows(IllegalArgumentException.class,
                () -> DynamoDBStreamsMultiLangDaemon.withOverrides(file(), List.of("orders-kcl")));

        assertTrue(refused.getMessage().contains("'orders-kcl' is not key=value"), refused.getMessage());
    }
}
