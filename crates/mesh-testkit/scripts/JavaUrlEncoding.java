// The JDK's own answers for what Dubbo's Java registry does to a string (run: java JavaUrlEncoding.java).
// For each stdin line (a Java string; `\n` escapes not interpreted) prints one tab-separated line:
//   URLEncoder.encode(line, "UTF-8") <TAB> line.hashCode() <TAB> URLDecoder.decode(encoded, "UTF-8").equals(line)
// Dubbo's URL.encode is URLEncoder.encode(value, "UTF-8") and persistent keys hold String.valueOf(path.hashCode())
// (apache/dubbo 2.7.x dubbo-common/.../URL.java, dubbo-remoting-etcd3/.../JEtcdClientWrapper.java).
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.net.URLDecoder;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;

public class JavaUrlEncoding {
    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        StringBuilder out = new StringBuilder();
        for (String line; (line = in.readLine()) != null; ) {
            String enc = URLEncoder.encode(line, "UTF-8");
            out.append(enc).append('\t').append(line.hashCode()).append('\t')
               .append(URLDecoder.decode(enc, "UTF-8").equals(line)).append('\n');
        }
        System.out.write(out.toString().getBytes(StandardCharsets.UTF_8));
        System.out.flush();
    }
}
